// Preloaded into every mbuild node process (NODE_OPTIONS=--import) by the benchmark: on exit it
// appends "PID MAXRSS_KB" — the process's own peak resident set (getrusage RUSAGE_SELF, which
// excludes the RUN steps' processes) — to $MBUILD_BENCH_RSS_FILE.
import { appendFileSync } from 'node:fs';

const file = process.env.MBUILD_BENCH_RSS_FILE;
if (file) {
  process.on('exit', () => {
    try {
      appendFileSync(file, `${process.pid} ${process.resourceUsage().maxRSS}\n`);
    } catch {
      // the benchmark then reports no RSS for this run
    }
  });
}
