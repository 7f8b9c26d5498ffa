import type { ActionTable } from './action.js';
import { asymmetricActions } from './asymmetric.js';
import { cryptoActions } from './crypto.js';
import { dataKeyActions } from './data-keys.js';
import { importActions } from './import.js';
import { instanceActions } from './instances.js';
import { aliasActions } from './aliases.js';
import { keyActions } from './keys.js';
import { macActions } from './mac.js';
import { randomActions } from './random.js';
import { reEncryptActions } from './re-encrypt.js';
import { tagActions } from './tags.js';
import { versionActions } from './versions.js';

/** Every RPC action this endpoint serves, by Alibaba action name. */
export const allActions: ActionTable = {
  ...keyActions,
  ...cryptoActions,
  ...asymmetricActions,
  ...macActions,
  ...dataKeyActions,
  ...reEncryptActions,
  ...randomActions,
  ...instanceActions,
  ...versionActions,
  ...aliasActions,
  ...tagActions,
  ...importActions,
};
