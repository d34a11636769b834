using System.Diagnostics;
using System.Diagnostics.Metrics;
using Fleet.Api.Autoscaling;
using Fleet.Client;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Fleet.Api.Monitoring;

/// <summary>
/// <c>fleet_tasks_waiting{reason}</c> on the meter <c>Fleet.Api</c>: the queued tasks not yet published, counted by
/// why they wait (<see cref="WaitingReasons"/>: delayed, retrying, rate- or concurrency-limited, waiting for their
/// tenant's share or behind higher priorities). One aggregate over <c>fleet.v_waiting_tasks</c> every
/// <c>Api:WaitingSampleSeconds</c> (10), off the scrape path like the autoscaling gauges: a scrape reads the last
/// count. Every reason has a series (0 when none waits for it), so that an alert on one sees a zero, not a gap. When
/// the database does not answer, the last count is served until it is three intervals old (at least 30 s), then the
/// gauge goes absent.
/// </summary>
public sealed partial class WaitingTasksSampler : BackgroundService
{
    private readonly TaskReads _reads;
    private readonly TimeSpan _interval;
    private readonly ILogger<WaitingTasksSampler> _logger;
    private volatile Sample? _latest;
    private bool _failing;

    public WaitingTasksSampler(NpgsqlDataSource dataSource, IOptions<ApiOptions> options, IMeterFactory meters, ILogger<WaitingTasksSampler> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(meters);
        _reads = new TaskReads(dataSource);
        _interval = TimeSpan.FromSeconds(options.Value.WaitingSampleSeconds);
        _logger = logger;

        // The factory hands out one Meter per name: this gauge sits beside the autoscaling ones.
        meters.Create(AutoscaleSampler.MeterName).CreateObservableGauge("fleet.tasks.waiting", Observe,
            description: "Queued tasks not yet published, by why they wait (reason: fleet.v_waiting_tasks.waiting_for).");
    }

    /// <summary>Three sampling intervals, and never under 30 s: one failed read does not blank the gauge.</summary>
    public TimeSpan StaleAfter => TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(30).Ticks, 3 * _interval.Ticks));

    /// <summary>The latest counts while they are fresh, else null.</summary>
    public IReadOnlyDictionary<string, long>? Latest =>
        _latest is { } sample && Stopwatch.GetElapsedTime(sample.TakenAtTimestamp) <= StaleAfter ? sample.Counts : null;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(_interval);
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
            _latest = new Sample(await _reads.GetWaitingCountsAsync(cancellationToken).ConfigureAwait(false), Stopwatch.GetTimestamp());
            if (_failing)
            {
                _failing = false;
                LogRecovered();
            }
        }
#pragma warning disable CA1031 // Whatever failed, the read is skipped and the next tick tries again; the API must not stop for it.
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
#pragma warning restore CA1031
        {
            if (!_failing)
            {
                // Once per outage, not once per read.
                _failing = true;
                LogSampleFailed(ex.GetType().Name, ex.Message, StaleAfter.TotalSeconds);
            }
        }
    }

    private IEnumerable<Measurement<long>> Observe()
    {
        if (Latest is not { } counts)
        {
            return [];
        }

        return WaitingReasons.All.Concat(counts.Keys.Except(WaitingReasons.All, StringComparer.Ordinal))
            .Select(reason => new Measurement<long>(counts.GetValueOrDefault(reason), new KeyValuePair<string, object?>("reason", reason)));
    }

    private sealed record Sample(IReadOnlyDictionary<string, long> Counts, long TakenAtTimestamp);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Counting the waiting tasks failed ({ErrorType}: {Reason}); the last count is served for {StaleSeconds} s, then fleet_tasks_waiting goes absent until counting works again")]
    private partial void LogSampleFailed(string errorType, string reason, double staleSeconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Counting the waiting tasks works again")]
    private partial void LogRecovered();
}
