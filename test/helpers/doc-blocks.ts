import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';

/**
 * Runnable documentation (issue 18): a fenced code block whose info string carries the word
 * `test` — ```` ```sh test ```` or ```` ```js test ```` — is run by test/e2e/docs.test.ts against a
 * real quickstart, exactly as written. Blocks without it are illustrations and are not run.
 */
export interface DocBlock {
  /** The file, relative to the repo root. */
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  language: 'sh' | 'js';
  code: string;
}

const FENCE = /^```(\S*)(.*)$/;

/** Every fenced block of `text`, marked or not, with its info words. */
export function fencedBlocks(text: string): Array<{ line: number; info: string[]; code: string }> {
  const lines = text.split('\n');
  const blocks: Array<{ line: number; info: string[]; code: string }> = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i] ?? '');
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i += 1; i < lines.length && !(lines[i] ?? '').startsWith('```'); i++) body.push(lines[i] ?? '');
    blocks.push({ line: start + 1, info: `${open[1] ?? ''} ${open[2] ?? ''}`.trim().split(/\s+/).filter(Boolean), code: `${body.join('\n')}\n` });
  }
  return blocks;
}

/** The runnable blocks of one markdown file. */
export function runnableBlocks(file: string, text: string): DocBlock[] {
  return fencedBlocks(text).flatMap((b): DocBlock[] => {
    if (!b.info.includes('test')) return [];
    const language = b.info[0];
    if (language === 'sh' || language === 'bash') return [{ file, line: b.line, language: 'sh', code: b.code }];
    if (language === 'js' || language === 'javascript' || language === 'mjs') return [{ file, line: b.line, language: 'js', code: b.code }];
    throw new Error(`${file}:${b.line}: a block marked "test" must be sh or js, not "${language}"`);
  });
}

/** README.md and docs/*.md, relative to `root`. */
export async function documentationFiles(root: string): Promise<string[]> {
  const docs = (await readdir(path.join(root, 'docs'))).filter((f) => f.endsWith('.md')).sort();
  return ['README.md', ...docs.map((f) => `docs/${f}`)];
}

export async function readDoc(root: string, file: string): Promise<string> {
  return readFile(path.join(root, file), 'utf8');
}

/** Markdown link targets `[text](target)` outside code blocks and inline code. */
export function linkTargets(text: string): Array<{ line: number; target: string }> {
  const out: Array<{ line: number; target: string }> = [];
  let inFence = false;
  text.split('\n').forEach((line, i) => {
    if (line.startsWith('```')) inFence = !inFence;
    if (inFence) return;
    const prose = line.replace(/`[^`]*`/g, '');
    for (const m of prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) out.push({ line: i + 1, target: m[1] ?? '' });
  });
  return out;
}
