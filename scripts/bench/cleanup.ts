/**
 * Everything the bench creates (processes, the database, Redis keys, temp dirs) registers its
 * undo here as soon as it exists; `runAll` undoes in reverse order, each step on its own, so one
 * failing step never leaves the rest behind. SIGINT/SIGTERM run it too.
 */
export class Cleanup {
  private readonly steps: Array<{ label: string; undo: () => Promise<void> | void }> = [];
  private running: Promise<void> | undefined;

  add(label: string, undo: () => Promise<void> | void): void {
    this.steps.push({ label, undo });
  }

  runAll(): Promise<void> {
    this.running ??= (async () => {
      for (const step of this.steps.reverse()) {
        try {
          await step.undo();
        } catch (error) {
          process.stderr.write(`bench cleanup: ${step.label}: ${error instanceof Error ? error.message : String(error)}\n`);
        }
      }
      this.steps.length = 0;
    })();
    return this.running;
  }

  /**
   * Ctrl-C or a kill: clean up, then exit 130. npm and tsx relay the signal again (SIGINT, then
   * SIGTERM) while the cleanup runs, so later signals do not cut it short; it gets 60 s.
   */
  onSignals(): void {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`\n${signal}: cleaning up…\n`);
      setTimeout(() => process.exit(130), 60_000).unref();
      void this.runAll().finally(() => process.exit(130));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.on('SIGHUP', onSignal);
  }
}
