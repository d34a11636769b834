using System.Diagnostics;
using System.Globalization;
using Fleet.Client;

namespace Fleet.Cli;

/// <summary>
/// Waits for a batch to finish: a redrawn progress bar on a terminal, a plain line every 5 s otherwise (on stderr,
/// so that stdout stays clean for scripts).
/// </summary>
internal static class BatchWatcher
{
    public static async Task<BatchProgress> WaitAsync(FleetClient client, Guid batchId, int total, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var interactive = !Console.IsErrorRedirected;
        var clock = Stopwatch.StartNew();
        var lastLine = TimeSpan.Zero;
        while (true)
        {
            var progress = await client.GetBatchProgressAsync(batchId, cancellationToken).ConfigureAwait(false);
            var done = progress.Final >= total;
            var rate = progress.Final / Math.Max(clock.Elapsed.TotalSeconds, 0.001);
            if (interactive)
            {
                await Console.Error.WriteAsync("\r" + Bar(progress.Final, total, rate, progress)).ConfigureAwait(false);
            }
            else if (done || clock.Elapsed - lastLine >= TimeSpan.FromSeconds(5))
            {
                lastLine = clock.Elapsed;
                await Console.Error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                    $"progress {progress.Final}/{total} final, {progress.Running} running, {rate:0.0} tasks/s")).ConfigureAwait(false);
            }

            if (done)
            {
                if (interactive)
                {
                    await Console.Error.WriteLineAsync().ConfigureAwait(false);
                }

                return progress;
            }

            if (clock.Elapsed > timeout)
            {
                throw new CliException($"timed out after {timeout.TotalSeconds:0} s with {progress.Final}/{total} tasks final; are workers running? (fleet workers)");
            }

            await Task.Delay(interactive ? 200 : 500, cancellationToken).ConfigureAwait(false);
        }
    }

    private static string Bar(long final, int total, double rate, BatchProgress progress)
    {
        const int width = 30;
        var filled = total == 0 ? width : (int)(width * final / total);
        return string.Create(CultureInfo.InvariantCulture,
            $"[{new string('#', filled)}{new string('.', width - filled)}] {final}/{total} {100.0 * final / Math.Max(total, 1),5:0.0}%  {rate,8:0.0} tasks/s  running {progress.Running}  failed {progress.Failed + progress.TimedOut}   ");
    }
}
