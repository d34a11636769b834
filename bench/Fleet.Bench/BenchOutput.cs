using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Fleet.Bench;

/// <summary>Writes a <see cref="BenchReport"/> as indented JSON and as Markdown tables.</summary>
internal static class BenchOutput
{
    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    public static string ToJson(BenchReport report) => JsonSerializer.Serialize(report, JsonOptions);

    public static string ToMarkdown(BenchReport report)
    {
        var inv = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        var m = report.Machine;
        md.AppendLine(inv, $"# fleet-bench, {report.StartedAt:yyyy-MM-dd HH:mm} UTC{(report.Label is { } label ? $": {label}" : "")}");
        md.AppendLine();
        md.AppendLine(inv, $"Host `{m.Host}`: {m.ProcessorCount} logical CPUs ({m.CpuModel ?? "unknown CPU"}), efficiency over {m.CoresUsed} cores; {m.Os}; {m.Runtime}; {m.Workers} worker process(es) seen; {report.QueueType.ToString().ToLowerInvariant()} lanes on {report.BrokerNodes} broker node(s).");
        md.AppendLine();
        md.AppendLine("| workload | mode | N | run | ok | wall s | submit s | tasks/s | p50 ms | p95 ms | p99 ms | last/first 10% | efficiency | task share of worker CPU | worker peak RSS MB | CPU s workers | CPU s rabbitmq | CPU s postgres | CPU s bench | broker mem_used peak MB | broker RSS peak MB |");
        md.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var w in report.Workloads)
        {
            var mode = w.ArrivalRate is { } rate ? string.Create(inv, $"open {rate:0}/s") : "closed";
            foreach (var r in w.Runs)
            {
                var rss = r.Workers.Count == 0 ? "-" : string.Join(" / ", r.Workers.Select(x => x.PeakRssBytes is { } b ? (b / 1048576.0).ToString("0", inv) : "?"));
                if (r.Workers.Count > 1 && r.Workers.All(x => x.PeakRssBytes is not null))
                {
                    // The fleet's whole footprint, to set beside a prefork pool's (all its processes together).
                    rss += string.Create(inv, $" (sum {r.Workers.Sum(x => x.PeakRssBytes!.Value) / 1048576.0:0})");
                }

                md.AppendLine(inv,
                    $"| {w.Workload} | {mode} | {w.Count} | {r.Run} | {r.Succeeded} | {r.WallSeconds:0.00} | {r.SubmitSeconds:0.00} | {r.Throughput:0.0} | {r.LatencyP50Ms:0.0} | {r.LatencyP95Ms:0.0} | {r.LatencyP99Ms:0.0} | {(r.GrowthRatio is { } g ? g.ToString("0.00", inv) : "-")} | {(r.Efficiency is { } e ? e.ToString("0.000", inv) : "-")} | {(r.UsefulWorkerCpuFraction is { } u ? u.ToString("0.00", inv) : "-")} | {rss} | {Cpu(r, "workers")} | {Cpu(r, "rabbitmq")} | {Cpu(r, "postgres")} | {Cpu(r, "bench")} | {MemUsed(r.BrokerMemory)} | {Rss(r.BrokerMemory)} |");
            }
        }

        var singles = report.Workloads.Where(w => w.SingleTask is not null).GroupBy(w => w.Workload).Select(g => g.First()).ToList();
        if (singles.Count > 0)
        {
            md.AppendLine();
            md.AppendLine("Single-task time (the handler in-process on one thread, median; efficiency uses the smaller of wall and CPU), and the");
            md.AppendLine("same handler under Parallel.For in the bench process (no broker, no database): this machine's ceiling, measured in the same invocation.");
            md.AppendLine();
            md.AppendLine("| workload | wall ms | CPU ms | runs | Parallel.For tasks | threads | tasks/s | efficiency | fleet median efficiency | fleet / Parallel.For |");
            md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var w in singles)
            {
                var t = w.SingleTask!;
                var p = t.ParallelFor;
                var fleet = report.Workloads.Where(x => x.Workload == w.Workload).SelectMany(x => x.Runs).Select(r => r.Efficiency).OfType<double>().ToArray();
                double? fleetMedian = fleet.Length > 0 ? SingleTaskTimer.Median(fleet) : null;
                md.AppendLine(inv,
                    $"| {w.Workload} | {t.WallMs:0.00} | {(t.CpuMs is { } c ? c.ToString("0.00", inv) : "-")} | {t.Repeats} | {(p is null ? "-" : p.Tasks.ToString(inv))} | {(p is null ? "-" : p.Threads.ToString(inv))} | {(p is null ? "-" : p.TasksPerSecond.ToString("0.0", inv))} | {(p is null ? "-" : p.Efficiency.ToString("0.000", inv))} | {(fleetMedian is { } f ? f.ToString("0.000", inv) : "-")} | {(p is not null && fleetMedian is { } g ? (g / p.Efficiency).ToString("0.00", inv) : "-")} |");
            }
        }

        if (report.RawBroker.Count > 0)
        {
            md.AppendLine();
            md.AppendLine(inv, $"Raw broker (RabbitMQ.Client, durable {report.QueueType.ToString().ToLowerInvariant()} queue, persistent, confirms + manual acks, publish and consume at once):");
            md.AppendLine();
            md.AppendLine("| run | messages | body bytes | s | msg/s | publish-only msg/s | broker mem_used peak MB | broker RSS peak MB |");
            md.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---:|");
            var i = 0;
            foreach (var r in report.RawBroker)
            {
                md.AppendLine(inv, $"| {++i} | {r.Count} | {r.BodyBytes} | {r.Seconds:0.00} | {r.RatePerSecond:0} | {r.PublishRatePerSecond:0} | {MemUsed(r.BrokerMemory)} | {Rss(r.BrokerMemory)} |");
            }

            var noop = report.Workloads.FirstOrDefault(w => w.Workload == "noop");
            if (noop is not null && report.RawBrokerMedianRate is { } rawRate)
            {
                md.AppendLine();
                md.AppendLine(inv, $"Fleet noop ({noop.Mode}) median {noop.MedianThroughput:0} tasks/s = **{noop.MedianThroughput / rawRate:0.000}** of the raw-broker median {rawRate:0} msg/s.");
            }
        }

        if (report.Backlog is { } b)
        {
            md.AppendLine();
            md.AppendLine(inv, $"Backlog: {b.Messages} messages of {b.BodyBytes} bytes in a {report.QueueType.ToString().ToLowerInvariant()} queue nobody consumes: queue memory {Megabytes(b.QueueMemoryBytes)} MB, the nodes' mem_used {Megabytes(b.MemUsedBeforeBytes)} MB before, {Megabytes(b.MemUsedAfterBytes)} MB after.");
        }

        return md.ToString();
    }

    private static string MemUsed(BrokerMemory? m) => Megabytes(m?.MemUsedPeakBytes);

    private static string Rss(BrokerMemory? m) => Megabytes(m?.PeakRssBytes);

    private static string Megabytes(long? bytes) => bytes is { } b ? (b / 1048576.0).ToString("0", CultureInfo.InvariantCulture) : "-";

    private static string Cpu(RunResult r, string component) =>
        r.CpuSeconds.TryGetValue(component, out var s) ? s.ToString("0.0", CultureInfo.InvariantCulture) : "-";
}
