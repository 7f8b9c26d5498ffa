import type { ActionTable } from './action.js';
import { cryptoActions } from './crypto.js';
import { instanceActions } from './instances.js';
import { keyActions } from './keys.js';

/** Every RPC action this endpoint serves, by Alibaba action name. */
export const allActions: ActionTable = {
  ...keyActions,
  ...cryptoActions,
  ...instanceActions,
};
