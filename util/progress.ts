/**
 * What the build, the registry and the commands report progress through. The CLI's implementation
 * (builder/cli/progress.ts) prints it; these types live here so every layer can take one.
 */
export interface StepHandle {
  output(chunk: Buffer | string): void;
  note(text: string): void;
  done(extra?: string): void;
  fail(): void;
  /** stopped because another stage failed (or Ctrl-C) */
  cancel(): void;
}

export interface ProgressReporter {
  /** a line of its own, outside any step */
  info(text: string): void;
  /** a new numbered step */
  step(label: string): StepHandle;
}
