import type { ActionTable } from './action.js';
import { cryptoActions } from './crypto.js';
import { importActions } from './import.js';
import { instanceActions } from './instances.js';
import { aliasActions } from './aliases.js';
import { keyActions } from './keys.js';
import { tagActions } from './tags.js';
import { versionActions } from './versions.js';

/** Every RPC action this endpoint serves, by Alibaba action name. */
export const allActions: ActionTable = {
  ...keyActions,
  ...cryptoActions,
  ...instanceActions,
  ...versionActions,
  ...aliasActions,
  ...tagActions,
  ...importActions,
};
