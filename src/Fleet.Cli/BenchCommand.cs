using System.CommandLine;
using System.Globalization;
using Fleet.Cli.Bench;
using Fleet.Client;

namespace Fleet.Cli;

/// <summary><c>fleet bench --workload noop,sha256 --count N [--runs R] [--rate R|half] [--json FILE] [--markdown FILE]</c>.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var workload = new Option<string[]>("--workload", "-w") { Description = $"Workloads to run ({string.Join(", ", Workloads.Names)}); repeat or comma-separate.", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => ["noop"] };
        var count = new Option<int>("--count", "-n") { Description = "Tasks per run.", DefaultValueFactory = _ => 1000 };
        var runs = new Option<int>("--runs") { Description = "Runs per workload (each its own batch).", DefaultValueFactory = _ => 3 };
        var rate = new Option<string?>("--rate") { Description = "Open loop: submit at this many tasks/s in small chunks; 'half' runs closed loop first, then open loop at half its median rate." };
        var openSeconds = new Option<double>("--open-seconds") { Description = "With --rate half: length of each open-loop run in seconds (N = rate x this, at most --count).", DefaultValueFactory = _ => 20 };
        var cores = new Option<int?>("--cores") { Description = "Cores for parallel efficiency (default: the processor count)." };
        var baseline = new Option<bool>("--baseline") { Description = "Raw RabbitMQ.Client publish+consume baseline before each noop run.", DefaultValueFactory = _ => true };
        var rawBody = new Option<int>("--raw-body-bytes") { Description = "Body size of the raw-broker messages.", DefaultValueFactory = _ => 1024 };
        var repeats = new Option<int>("--single-runs") { Description = "In-process single-task timings per CPU workload, at least this many and at least 1 s of them (median).", DefaultValueFactory = _ => 5 };
        var parallelFor = new Option<double>("--parallel-for-seconds") { Description = "In-process Parallel.For baseline per CPU workload, about this long (0: none): the machine's own efficiency ceiling.", DefaultValueFactory = _ => 5 };
        var warmUp = new Option<int>("--warm-up") { Description = "Tasks of an unmeasured warm-up batch before each workload's runs (0: none).", DefaultValueFactory = _ => 1000 };
        var workers = new Option<int?>("--workers") { Description = "Worker processes running (recorded in the report; the bench measures whatever runs)." };
        var json = new Option<FileInfo?>("--json") { Description = "Write the full report as JSON." };
        var markdown = new Option<FileInfo?>("--markdown") { Description = "Write the report as Markdown tables." };
        var timeout = new Option<int>("--run-timeout") { Description = "Give up a run after this many seconds.", DefaultValueFactory = _ => 3600 };
        var command = new Command("bench", "Benchmark the running fleet: throughput, latency, efficiency, RSS and CPU per component (WORKLOADS.md).")
        {
            workload, count, runs, rate, openSeconds, cores, baseline, rawBody, repeats, parallelFor, warmUp, workers, json, markdown, timeout,
        };
        command.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            var names = (parse.GetValue(workload) ?? []).SelectMany(w => w.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToList();
            foreach (var name in names.Where(n => !Workloads.Names.Contains(n)))
            {
                throw new CliException($"unknown workload '{name}'; known: {string.Join(", ", Workloads.Names)}");
            }

            if (parse.GetValue(count) < 1 || parse.GetValue(runs) < 1)
            {
                throw new CliException("--count and --runs must be at least 1");
            }

            var rateText = parse.GetValue(rate);
            double? fixedRate = null;
            if (rateText is not null && rateText != "half")
            {
                if (!double.TryParse(rateText, NumberStyles.Float, CultureInfo.InvariantCulture, out var r) || r <= 0)
                {
                    throw new CliException("--rate takes a positive number of tasks/s or 'half'");
                }

                fixedRate = r;
            }

            var settings = new BenchSettings
            {
                PostgresConnectionString = CliSettings.PostgresConnectionString,
                AmqpUri = CliSettings.RabbitMqUri,
                Workloads = names,
                Count = parse.GetValue(count),
                Runs = parse.GetValue(runs),
                Rate = fixedRate,
                RateHalfOfMax = rateText == "half",
                OpenLoopSeconds = parse.GetValue(openSeconds),
                Cores = parse.GetValue(cores),
                Baseline = parse.GetValue(baseline),
                RawBodyBytes = parse.GetValue(rawBody),
                SingleTaskRepeats = Math.Max(1, parse.GetValue(repeats)),
                ParallelForSeconds = Math.Max(0, parse.GetValue(parallelFor)),
                WarmUpTasks = Math.Max(0, parse.GetValue(warmUp)),
                WorkersHint = parse.GetValue(workers),
                RunTimeout = TimeSpan.FromSeconds(parse.GetValue(timeout)),
            };

            await using var client = CliSettings.CreateClient();
            var report = await new BenchRunner(settings, client, Console.Error).RunAsync(ct).ConfigureAwait(false);
            var md = BenchOutput.ToMarkdown(report);
            Console.WriteLine(md);
            if (parse.GetValue(json) is { } jsonFile)
            {
                jsonFile.Directory?.Create();
                await File.WriteAllTextAsync(jsonFile.FullName, BenchOutput.ToJson(report), ct).ConfigureAwait(false);
            }

            if (parse.GetValue(markdown) is { } mdFile)
            {
                mdFile.Directory?.Create();
                await File.WriteAllTextAsync(mdFile.FullName, md, ct).ConfigureAwait(false);
            }

            return report.Workloads.All(w => w.Runs.All(r => r.NotSucceeded == 0)) ? 0 : 1;
        }, cancellationToken));
        return command;
    }
}
