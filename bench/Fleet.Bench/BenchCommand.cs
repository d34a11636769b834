using System.CommandLine;
using System.Globalization;
using System.Net;
using Fleet.Client;
using Fleet.Tasks.BuiltIn;

namespace Fleet.Bench;

/// <summary><c>fleet-bench --workload noop,sha256 --count N [--runs R] [--rate R|half] [--json FILE] [--markdown FILE]</c>.</summary>
internal static class BenchCommand
{
    public static RootCommand Create()
    {
        var workload = new Option<string[]>("--workload", "-w") { Description = $"Workloads to run ({string.Join(", ", StandardWorkloads.Names)}); repeat or comma-separate.", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => ["noop"] };
        var count = new Option<int>("--count", "-n") { Description = "Tasks per run.", DefaultValueFactory = _ => 1000 };
        var runs = new Option<int>("--runs") { Description = "Runs per workload (each its own batch).", DefaultValueFactory = _ => 3 };
        var rate = new Option<string?>("--rate") { Description = "Open loop: submit at this many tasks/s in small chunks; 'half' runs closed loop first, then open loop at half its median rate." };
        var openSeconds = new Option<double>("--open-seconds") { Description = "With --rate half: length of each open-loop run in seconds (N = rate x this, at most --count).", DefaultValueFactory = _ => 20 };
        var cores = new Option<int?>("--cores") { Description = "Cores for parallel efficiency (default: the processor count)." };
        var baseline = new Option<bool>("--baseline") { Description = "Raw RabbitMQ.Client publish+consume baseline before each noop run.", DefaultValueFactory = _ => true };
        var rawBody = new Option<int?>("--raw-body-bytes") { Description = "Body size of the raw-broker messages (default: the size of Fleet's own noop message, as a submission publishes it)." };
        var repeats = new Option<int>("--single-runs") { Description = "In-process single-task timings per CPU workload, at least this many and at least 1 s of them (median).", DefaultValueFactory = _ => 5 };
        var parallelFor = new Option<double>("--parallel-for-seconds") { Description = "In-process Parallel.For baseline per CPU workload, about this long (0: none): the machine's own efficiency ceiling.", DefaultValueFactory = _ => 5 };
        var warmUp = new Option<int>("--warm-up") { Description = "Tasks of an unmeasured warm-up batch before each workload's runs (0: none).", DefaultValueFactory = _ => 1000 };
        var workers = new Option<int?>("--workers") { Description = "Worker processes running (recorded in the report; the bench measures whatever runs)." };
        var json = new Option<FileInfo?>("--json") { Description = "Write the full report as JSON." };
        var markdown = new Option<FileInfo?>("--markdown") { Description = "Write the report as Markdown tables." };
        var timeout = new Option<int>("--run-timeout") { Description = "Give up a run after this many seconds.", DefaultValueFactory = _ => 3600 };
        var queueType = new Option<string?>("--queue-type") { Description = $"The lanes' queue type, classic or quorum: the client declares with it and the raw baseline's queue is one (default: {QueueTopology.QueueTypeKey}, environment RabbitMq__QueueType, as the workers read it)." };
        var management = new Option<string?>("--rabbitmq-management-url") { Description = "RabbitMQ management API, http://user:pass@host:15672/, for the broker's mem_used during each run (default: environment FLEET_RABBITMQ_MANAGEMENT_URL; none: not sampled)." };
        var onComplete = new Option<bool>("--on-complete") { Description = "Each run is one batch with an onComplete noop task (one transaction); logs how long after the batch's end the callback started." };
        var oneTransaction = new Option<bool>("--one-transaction") { Description = "Each run is one batch stored in one transaction, without a callback: the control for --on-complete." };
        var label = new Option<string?>("--label") { Description = "What is special about this invocation's fleet (e.g. the workers' distance from the servers), printed with the results." };
        var command = new RootCommand("Benchmark the running fleet with the standard workloads: throughput, latency, efficiency, RSS and CPU per component.")
        {
            workload, count, runs, rate, openSeconds, cores, baseline, rawBody, repeats, parallelFor, warmUp, workers, json, markdown, timeout, label, queueType, management, onComplete, oneTransaction,
        };
        command.Subcommands.Add(DelayProxyCommand());
        command.SetAction((parse, cancellationToken) => RunAsync(async ct =>
        {
            var names = (parse.GetValue(workload) ?? []).SelectMany(w => w.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToList();
            foreach (var name in names.Where(n => !StandardWorkloads.Names.Contains(n)))
            {
                throw new BenchException($"unknown workload '{name}'; known: {string.Join(", ", StandardWorkloads.Names)}");
            }

            if (parse.GetValue(count) < 1 || parse.GetValue(runs) < 1)
            {
                throw new BenchException("--count and --runs must be at least 1");
            }

            var rateText = parse.GetValue(rate);
            double? fixedRate = null;
            if (rateText is not null && rateText != "half")
            {
                if (!double.TryParse(rateText, NumberStyles.Float, CultureInfo.InvariantCulture, out var r) || r <= 0)
                {
                    throw new BenchException("--rate takes a positive number of tasks/s or 'half'");
                }

                fixedRate = r;
            }

            var settings = new BenchSettings
            {
                PostgresConnectionString = ConnectionString("fleetdb"),
                AmqpUri = ConnectionString("rabbitmq"),
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
                Label = parse.GetValue(label),
                OnComplete = parse.GetValue(onComplete),
                OneTransaction = parse.GetValue(oneTransaction),
                QueueType = ParseQueueType(parse.GetValue(queueType) ?? Environment.GetEnvironmentVariable("RabbitMq__QueueType")),
                ManagementUrl = parse.GetValue(management) ?? Environment.GetEnvironmentVariable("FLEET_RABBITMQ_MANAGEMENT_URL"),
            };

            await using var client = new FleetClient(new FleetClientOptions { PostgresConnectionString = settings.PostgresConnectionString, RabbitMqUri = settings.AmqpUri, QueueType = settings.QueueType });
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

    /// <summary>
    /// <c>fleet-bench delay-proxy --one-way-ms 0.5 --to 127.0.0.1:5432 [--to ...] [--ports-file FILE]</c>: forwards a free
    /// loopback port to each target with the delay, until SIGTERM or Ctrl+C. <c>make bench</c> points the workers at it.
    /// </summary>
    private static Command DelayProxyCommand()
    {
        var oneWay = new Option<double>("--one-way-ms") { Description = "Delay in each direction, in milliseconds (a round trip costs twice this).", DefaultValueFactory = _ => 0.5 };
        var targets = new Option<string[]>("--to") { Description = "HOST:PORT to forward to; repeat for several.", Required = true, AllowMultipleArgumentsPerToken = true };
        var portsFile = new Option<FileInfo?>("--ports-file") { Description = "Written once every port listens: one line 'TARGET_PORT LISTEN_PORT' per target, then '# round trip ...' as measured through the proxy." };
        var command = new Command("delay-proxy", "Forward TCP connections with a fixed delay each way: a server as far away as a slower network puts it.")
        {
            oneWay, targets, portsFile,
        };
        command.SetAction((parse, cancellationToken) => RunAsync(async ct =>
        {
            var delay = parse.GetValue(oneWay);
            if (delay is < 0 or > 10_000)
            {
                throw new BenchException("--one-way-ms takes 0 to 10000");
            }

            using var proxy = new DelayProxy(TimeSpan.FromMilliseconds(delay));
            var lines = new List<string>();
            foreach (var text in parse.GetValue(targets) ?? [])
            {
                if (!IPEndPoint.TryParse(text, out var target) || target.Port == 0)
                {
                    throw new BenchException($"--to takes HOST:PORT with a numeric address, not '{text}'");
                }

                var listening = proxy.Forward(target);
                lines.Add(string.Create(CultureInfo.InvariantCulture, $"{target.Port} {listening.Port}"));
                await Console.Error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"fleet-bench delay-proxy: {listening} -> {target}, {delay} ms each way")).ConfigureAwait(false);
            }

            var (p50, p99) = await proxy.MeasureRoundTripAsync(200, ct).ConfigureAwait(false);
            var measured = string.Create(CultureInfo.InvariantCulture, $"round trip through the proxy p50 {p50:0.00} ms, p99 {p99:0.00} ms");
            await Console.Error.WriteLineAsync($"fleet-bench delay-proxy: {measured}").ConfigureAwait(false);
            lines.Add($"# {measured}");
            if (parse.GetValue(portsFile) is { } file)
            {
                // Written whole, then renamed: a reader never sees half of it.
                await File.WriteAllLinesAsync(file.FullName + ".tmp", lines, ct).ConfigureAwait(false);
                File.Move(file.FullName + ".tmp", file.FullName, overwrite: true);
            }

            try
            {
                await Task.Delay(Timeout.Infinite, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // SIGTERM or Ctrl+C: the normal way to stop the proxy.
            }

            return 0;
        }, cancellationToken));
        return command;
    }

    /// <summary>A connection string from the environment, as <c>make up</c> writes them to <c>.fleet/env</c>.</summary>
    private static string ConnectionString(string name)
    {
        var value = Environment.GetEnvironmentVariable($"ConnectionStrings__{name}");
        return string.IsNullOrWhiteSpace(value)
            ? throw new BenchException($"ConnectionStrings__{name} is not set. Run `make up` and `. .fleet/env`, or export it.")
            : value;
    }

    private static BrokerQueueType ParseQueueType(string? value)
    {
        try
        {
            return QueueTopology.ParseQueueType(value);
        }
        catch (FormatException ex)
        {
            throw new BenchException($"--queue-type: {ex.Message}");
        }
    }

    /// <summary>Runs the command body: a <see cref="BenchException"/> prints one line to stderr and exits 2; Ctrl+C exits 130.</summary>
    private static async Task<int> RunAsync(Func<CancellationToken, Task<int>> body, CancellationToken cancellationToken)
    {
        try
        {
            return await body(cancellationToken).ConfigureAwait(false);
        }
        catch (BenchException ex)
        {
            await Console.Error.WriteLineAsync($"fleet-bench: {ex.Message}").ConfigureAwait(false);
            return 2;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync("fleet-bench: cancelled").ConfigureAwait(false);
            return 130;
        }
    }
}

/// <summary>A failure the user can act on: printed without a stack trace, exit code 2.</summary>
internal sealed class BenchException(string message) : Exception(message)
{
    public BenchException()
        : this("The benchmark failed.")
    {
    }

    public BenchException(string message, Exception innerException)
        : this(message + " " + innerException.Message)
    {
    }
}
