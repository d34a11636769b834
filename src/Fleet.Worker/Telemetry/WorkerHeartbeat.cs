using Fleet.Persistence.Entities;
using Fleet.Tasks;
using Fleet.Worker.MessagePath;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Fleet.Worker.Telemetry;

/// <summary>
/// Registers the worker in <c>fleet.workers</c> at start, refreshes <c>last_seen_at</c> and its counters every
/// <c>Worker:HeartbeatSeconds</c>, and records <c>stopped</c> at shutdown. Registered before the bus, so it stops
/// after the bus has drained and the last counters are final. The process lane's figures come through
/// <see cref="ProcessLaneMetrics"/>, not the pool itself: taking it here creates it as the host starts, so its
/// instruments exist from then on, and <c>/metrics</c> and <c>fleet.workers</c> count kills and slots the same way.
/// </summary>
public sealed partial class WorkerHeartbeat(
    NpgsqlDataSource dataSource,
    WorkerIdentity identity,
    WorkerMetrics metrics,
    ProcessLaneMetrics processLane,
    HeldTasks held,
    TaskHandlerRegistry registry,
    IOptions<WorkerOptions> options,
    IHostApplicationLifetime lifetime,
    ILogger<WorkerHeartbeat> logger) : BackgroundService
{
    private const string UpsertSql = """
        INSERT INTO fleet.workers (id, host, pid, queues, cpu_concurrency, io_concurrency, started_at, last_seen_at, state,
                                   tasks_succeeded, tasks_failed, tasks_skipped, version, held_tasks,
                                   process_slots, process_busy, process_children_started, process_kills, process_deaths)
        VALUES (@id, @host, @pid, @queues, @cpu, @io, @started_at, now(), @state, @succeeded, @failed, @skipped, @version, @held,
                @process_slots, @process_busy, @process_started, @process_kills, @process_deaths)
        ON CONFLICT (id) DO UPDATE
            SET last_seen_at = now(), state = excluded.state, tasks_succeeded = excluded.tasks_succeeded,
                tasks_failed = excluded.tasks_failed, tasks_skipped = excluded.tasks_skipped, held_tasks = excluded.held_tasks,
                process_slots = excluded.process_slots, process_busy = excluded.process_busy,
                process_children_started = excluded.process_children_started, process_kills = excluded.process_kills,
                process_deaths = excluded.process_deaths
        """;

    private readonly WorkerOptions _options = options.Value;
    private string _state = WorkerState.Running;

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        await WriteAsync(cancellationToken).ConfigureAwait(false);
        LogRegistered(identity.Id, string.Join(',', _options.Queues), _options.CpuConcurrency, _options.IoConcurrency,
            processLane.Slots, processLane.Types.Count > 0 ? string.Join(',', processLane.Types) : "none", string.Join(',', registry.Types));

        // Draining starts when the host begins to stop, before the bus stops taking messages.
        lifetime.ApplicationStopping.Register(() => _state = WorkerState.Draining);
        await base.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(_options.HeartbeatSeconds));
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                try
                {
                    await WriteAsync(stoppingToken).ConfigureAwait(false);
                }
                catch (NpgsqlException ex)
                {
                    // The database may be restarting; the next beat tries again.
                    LogHeartbeatFailed(ex.Message);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        _state = WorkerState.Stopped;
        try
        {
            await WriteAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (NpgsqlException ex)
        {
            LogHeartbeatFailed(ex.Message);
        }
    }

    private async Task WriteAsync(CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(UpsertSql);
        command.Parameters.AddWithValue("id", identity.Id);
        command.Parameters.AddWithValue("host", identity.Host);
        command.Parameters.AddWithValue("pid", identity.Pid);
        command.Parameters.AddWithValue("queues", _options.Queues);
        command.Parameters.AddWithValue("cpu", _options.CpuConcurrency);
        command.Parameters.AddWithValue("io", _options.IoConcurrency);
        command.Parameters.AddWithValue("started_at", identity.StartedAt);
        command.Parameters.AddWithValue("state", _state);
        command.Parameters.AddWithValue("succeeded", metrics.Succeeded);
        command.Parameters.AddWithValue("failed", metrics.Failed);
        command.Parameters.AddWithValue("skipped", metrics.Skipped);
        // Taken before the write: last_seen_at (set by the server as it writes) is never older than this snapshot.
        command.Parameters.AddWithValue("held", held.Snapshot());
        command.Parameters.AddWithValue("version", typeof(WorkerHeartbeat).Assembly.GetName().Version?.ToString() ?? "");
        command.Parameters.AddWithValue("process_slots", processLane.Slots);
        command.Parameters.AddWithValue("process_busy", processLane.Busy);
        command.Parameters.AddWithValue("process_started", processLane.ChildrenStarted);
        command.Parameters.AddWithValue("process_kills", processLane.Kills);
        command.Parameters.AddWithValue("process_deaths", processLane.Deaths);
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Worker {WorkerId} registered: queues {Queues}, CPU lane {Cpu}, I/O lane {Io}, process lane {Process} (types {ProcessTypes}), task types {Types}")]
    private partial void LogRegistered(string workerId, string queues, int cpu, int io, int process, string processTypes, string types);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Heartbeat write failed: {Reason}")]
    private partial void LogHeartbeatFailed(string reason);
}
