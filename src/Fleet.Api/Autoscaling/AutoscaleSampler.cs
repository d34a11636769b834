using System.Diagnostics;
using System.Diagnostics.Metrics;
using Fleet.Api.Models;
using Fleet.Api.Monitoring;
using Fleet.Client;
using Fleet.Contracts;
using Microsoft.Extensions.Options;

namespace Fleet.Api.Autoscaling;

/// <summary>One sample of the autoscaling inputs and the resulting desired worker counts.</summary>
public sealed record AutoscaleSample(
    IReadOnlyList<QueueDepth> Queues,
    int LiveWorkers,
    int BusyWorkers,
    IReadOnlyList<LaneLoad> Lanes,
    DesiredWorkers Desired,
    long TakenAtTimestamp);

/// <summary>
/// Reads the autoscaling inputs (<see cref="MonitoringQueries.ReadAutoscaleInputsAsync"/> and the management API)
/// every <c>Api:Autoscale:SampleSeconds</c> and exports them with the result on the meter <c>Fleet.Api</c>
/// (Prometheus names in docs/observability.md): <c>fleet_queue_ready{queue}</c>, <c>fleet_queue_unacked{queue}</c>, <c>fleet_queue_consumers{queue}</c>, <c>fleet_workers_live</c>,
/// <c>fleet_workers_busy</c>, <c>fleet_worker_completion_rate{lane}</c>, <c>fleet_desired_workers</c> and
/// <c>fleet_desired_workers_by_lane{lane}</c>. Sampling is done here, off the scrape path: a scrape reads the last
/// sample. When sampling fails (management API or database away) the last good sample is served until it is
/// <see cref="StaleAfter"/> old, then the gauges go absent, so that an autoscaler sees "no data" (and can hold its
/// replicas) instead of a stale number or a zero. A paused lane (<c>fleet.queue_pauses</c>) asks for no workers for its
/// backlog, which no worker may take: its ready and dispatchable tasks count as 0, and only what its workers still
/// hold (unacked, busy) counts, until they finish it.
/// </summary>
public sealed partial class AutoscaleSampler : BackgroundService
{
    public const string MeterName = "Fleet.Api";

    private static readonly (string Lane, string Queue)[] Lanes = [("cpu", TaskQueues.Cpu), ("io", TaskQueues.Io)];

    private readonly MonitoringQueries _queries;
    private readonly RabbitMqManagementClient _management;
    private readonly QueuePauses _pauses;
    private readonly AutoscaleOptions _options;
    private readonly ApiOptions _api;
    private readonly DesiredWorkersCalculator _calculator;
    private readonly ILogger<AutoscaleSampler> _logger;
    private readonly Meter _meter;
    private readonly Counter<long> _errors;

    // The last capacity seen per lane: with every worker gone (scaled to zero) the size of the next one is still known.
    private readonly Dictionary<string, double> _lastCapacity = new(StringComparer.Ordinal);
    private volatile AutoscaleSample? _latest;
    private bool _failing;

    public AutoscaleSampler(
        MonitoringQueries queries,
        RabbitMqManagementClient management,
        QueuePauses pauses,
        IOptions<AutoscaleOptions> options,
        IOptions<ApiOptions> api,
        IMeterFactory meters,
        ILogger<AutoscaleSampler> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(api);
        ArgumentNullException.ThrowIfNull(meters);
        _queries = queries;
        _management = management;
        _pauses = pauses;
        _options = options.Value;
        _api = api.Value;
        _calculator = new DesiredWorkersCalculator(_options);
        _logger = logger;
        _meter = meters.Create(MeterName);
        _errors = _meter.CreateCounter<long>("fleet.autoscale.errors", description: "Autoscaling samples that failed (management API or database did not answer).");
        _meter.CreateObservableGauge("fleet.queue.ready", () => Observe(s => s.Queues.Select(q => new Measurement<long>(q.Ready, Tag("queue", q.Name)))),
            description: "Messages waiting in the queue for a worker (RabbitMQ management API).");
        _meter.CreateObservableGauge("fleet.queue.unacked", () => Observe(s => s.Queues.Select(q => new Measurement<long>(q.Unacked, Tag("queue", q.Name)))),
            description: "Messages delivered to workers and not yet acknowledged: running or prefetched.");
        _meter.CreateObservableGauge("fleet.queue.consumers", () => Observe(s => s.Queues.Select(q => new Measurement<int>(q.Consumers, Tag("queue", q.Name)))),
            description: "Consumers of the queue.");
        _meter.CreateObservableGauge("fleet.workers.live", () => Observe<int>(s => [new Measurement<int>(s.LiveWorkers)]),
            description: "Workers running with a recent heartbeat.");
        _meter.CreateObservableGauge("fleet.workers.busy", () => Observe<int>(s => [new Measurement<int>(s.BusyWorkers)]),
            description: "Live workers running at least one task.");
        _meter.CreateObservableGauge("fleet.worker.completion_rate", () => Observe(s => s.Lanes
                .Where(l => l.CompletionsPerWorkerPerSecond is not null)
                .Select(l => new Measurement<double>(l.CompletionsPerWorkerPerSecond!.Value, Tag("lane", l.Lane)))),
            description: "Tasks finished per live worker and second over Api:Autoscale:RateWindowSeconds.");
        _meter.CreateObservableGauge("fleet.desired_workers", () => Observe<int>(s => [new Measurement<int>(s.Desired.Total)]),
            description: "Workers the fleet should have now: the autoscaling signal (docs/observability.md).");
        _meter.CreateObservableGauge("fleet.desired_workers_by_lane", () => Observe(s => s.Desired.ByLane.Select(l => new Measurement<int>(l.Value, Tag("lane", l.Key)))),
            description: "Workers each lane alone needs, for fleets with one worker set per lane.");
    }

    /// <summary>The latest sample while it is fresh, else null.</summary>
    public AutoscaleSample? Latest =>
        _latest is { } sample && Stopwatch.GetElapsedTime(sample.TakenAtTimestamp) <= StaleAfter ? sample : null;

    /// <summary>Three sampling intervals, and never under 30 s: one failed sample does not blank the signal.</summary>
    public TimeSpan StaleAfter => TimeSpan.FromSeconds(Math.Max(30, 3 * _options.SampleSeconds));

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!_options.Enabled)
        {
            return;
        }

        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(_options.SampleSeconds));
        try
        {
            do
            {
                await SampleOnceAsync(stoppingToken).ConfigureAwait(false);
            }
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task SampleOnceAsync(CancellationToken cancellationToken)
    {
        try
        {
            var queuesCall = _management.GetQueuesAsync(cancellationToken);
            var (workers, busy, finished, dispatchable) = await _queries.ReadAutoscaleInputsAsync(
                _api.WorkerStaleSeconds, _options.RateWindowSeconds, cancellationToken).ConfigureAwait(false);
            var paused = (await _pauses.ListAsync(cancellationToken).ConfigureAwait(false))
                .Where(q => q.Paused).Select(q => q.Queue).ToHashSet(StringComparer.Ordinal);
            var (queues, error) = await queuesCall.ConfigureAwait(false);
            if (error is not null)
            {
                Failed(error);
                return;
            }

            _latest = Build(queues, workers, busy, finished, dispatchable, paused);
            if (_failing)
            {
                _failing = false;
                LogRecovered();
            }
        }
#pragma warning disable CA1031 // Whatever failed, the sample is skipped and the next tick tries again; the API must not stop for it.
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
#pragma warning restore CA1031
        {
            Failed($"{ex.GetType().Name}: {ex.Message}");
        }
    }

    private AutoscaleSample Build(
        IReadOnlyList<QueueDepth> queues,
        List<(string Id, string[] Queues, int Cpu, int Io)> workers,
        List<(string WorkerId, string Queue)> busy,
        Dictionary<string, long> finished,
        Dictionary<string, long> dispatchable,
        HashSet<string> paused)
    {
        // The signal sizes the deployment of the built-in lanes: a worker group's workers (serving none of them) scale
        // on their own queue (docs/worker-groups.md), and their being busy asks for no worker of the lanes.
        workers = [.. workers.Where(w => w.Queues.Any(QueueCatalog.IsBuiltIn))];
        var live = workers.Select(w => w.Id).ToHashSet(StringComparer.Ordinal);
        var busyLive = busy.Where(b => live.Contains(b.WorkerId)).ToList();
        var lanes = new List<LaneLoad>(Lanes.Length);
        foreach (var (lane, queue) in Lanes)
        {
            var serving = workers.Where(w => w.Queues.Contains(queue, StringComparer.Ordinal)).ToList();
            if (serving.Count > 0)
            {
                _lastCapacity[lane] = serving.Average(w => queue == TaskQueues.Cpu ? w.Cpu : w.Io);
            }

            // The lane's work: its queue, its dispatch queue, and the dispatched tasks waiting in PostgreSQL for their turn.
            var depth = queues.FirstOrDefault(q => q.Name == queue);
            var dispatchDepth = queues.FirstOrDefault(q => q.Name == TaskQueues.DispatchQueueOf(queue));
            double? rate = serving.Count > 0 && finished.TryGetValue(queue, out var done) && done > 0
                ? done / (double)_options.RateWindowSeconds / serving.Count
                : null;
            // A paused lane's backlog waits for the resume, not for more workers: it asks for none.
            lanes.Add(new LaneLoad(
                lane,
                paused.Contains(queue) ? 0 : (depth?.Ready ?? 0) + (dispatchDepth?.Ready ?? 0) + dispatchable.GetValueOrDefault(queue),
                (depth?.Unacked ?? 0) + (dispatchDepth?.Unacked ?? 0),
                _lastCapacity.GetValueOrDefault(lane),
                busyLive.Where(b => b.Queue == queue).Select(b => b.WorkerId).Distinct(StringComparer.Ordinal).Count(),
                rate));
        }

        var busyWorkers = busyLive.Select(b => b.WorkerId).Distinct(StringComparer.Ordinal).Count();
        return new AutoscaleSample(queues, workers.Count, busyWorkers, lanes, _calculator.Calculate(lanes, busyWorkers), Stopwatch.GetTimestamp());
    }

    private void Failed(string reason)
    {
        _errors.Add(1);
        if (!_failing)
        {
            // Once per outage, not once per sample.
            _failing = true;
            LogSampleFailed(reason, StaleAfter.TotalSeconds);
        }
    }

    private IEnumerable<Measurement<T>> Observe<T>(Func<AutoscaleSample, IEnumerable<Measurement<T>>> measure)
        where T : struct => Latest is { } sample ? measure(sample) : [];

    private static KeyValuePair<string, object?> Tag(string name, string value) => new(name, value);

    public override void Dispose()
    {
        _meter.Dispose();
        base.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Autoscaling sample failed ({Reason}); the last sample is served for {StaleSeconds} s, then the autoscaling gauges go absent until sampling works again")]
    private partial void LogSampleFailed(string reason, double staleSeconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Autoscaling samples work again")]
    private partial void LogRecovered();
}
