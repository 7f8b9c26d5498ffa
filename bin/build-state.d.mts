/** Types of build-state.mjs (plain JavaScript: it runs before any build). */
export declare const packageRoot: string;
export declare function buildState(root?: string): { hasSources: boolean; built: boolean; current: boolean };
