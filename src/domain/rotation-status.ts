import type { AutomaticRotation, KeyState } from './key.js';

export type { AutomaticRotation };

/**
 * What `AutomaticRotation` becomes when a key enters `next`. §5.4 / seed 002: rotation is
 * paused while a key is not Enabled and resumes when it is enabled again; Alibaba shows the
 * pause as `Suspended`. A key whose rotation is off stays `Disabled` whatever its state.
 */
export function rotationAfterTransition(current: AutomaticRotation, next: KeyState): AutomaticRotation {
  if (current === 'Disabled') return 'Disabled';
  return next === 'Enabled' ? 'Enabled' : 'Suspended';
}
