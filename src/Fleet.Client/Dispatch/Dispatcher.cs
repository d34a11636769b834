using System.Diagnostics;
using Fleet.Contracts;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Fleet.Client;

/// <summary>
/// Publishes the dispatched tasks (<c>fleet.tasks.dispatched</c>: a tenant, a priority above 0, or a type under a
/// limit), which wait in PostgreSQL instead of the broker, to their lane's dispatch queue
/// (<see cref="TaskQueues.DispatchQueueOf"/>), which workers consume beside the lane:
/// <list type="bullet">
/// <item><b>a few at a time</b>: per lane, only as many published-but-not-started tasks as the lane starts in
/// <c>Dispatch:OutstandingSeconds</c> (measured, within <c>MinOutstanding</c>..<c>MaxOutstanding</c>), so a task
/// that arrives later, of another tenant or of a higher priority, waits behind that little, not behind a flood;</item>
/// <item><b>in order</b>: highest priority first, a waiting task gaining one level per <c>Dispatch:AgingSeconds</c>
/// (so none waits for ever), and within a priority the tenants in turns (<see cref="DispatchSql.Next"/>);</item>
/// <item><b>within the limits</b> of <c>fleet.limits</c>: a token bucket per limited type and tenant (starts per
/// second), and a count of the published and running ones (at most <c>max_running</c>). Held-back tasks stay in
/// PostgreSQL and hold no worker slot.</item>
/// </list>
/// Every API replica and worker runs it; one leads, the holder of a session advisory lock on a connection it keeps
/// open, and the others try for the lock every second, so a lost leader (its connection gone) is replaced within
/// about a second. The buckets and rates live in the leader's memory: a new leader starts with full buckets.
/// </summary>
public sealed partial class Dispatcher
{
    private static readonly TimeSpan LeaderRetry = TimeSpan.FromSeconds(1);

    /// <summary>How long a limit counts as blocking after it last held a task back (so it does not flap every round).</summary>
    private static readonly TimeSpan BlockedHold = TimeSpan.FromSeconds(2);

    private readonly NpgsqlDataSource _dataSource;
    private readonly OutboxPublisher _publisher;
    private readonly DispatchOptions _options;
    private readonly LimitCatalog _limits;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;

    public Dispatcher(NpgsqlDataSource dataSource, ITaskPublisher publisher, DispatchOptions options, TaskSubmitterOptions submitOptions, ILogger<Dispatcher>? logger = null, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentNullException.ThrowIfNull(publisher);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(submitOptions);
        _dataSource = dataSource;
        _options = options;
        _time = time ?? TimeProvider.System;
        _logger = logger ?? NullLogger<Dispatcher>.Instance;
        _publisher = new OutboxPublisher(dataSource, publisher, submitOptions, _logger);
        _limits = new LimitCatalog(dataSource, TimeSpan.FromMilliseconds(options.LimitRefreshMs), _time, _logger);
    }

    /// <summary>
    /// Tries for the lead every second and, while leading, runs a round every <c>Dispatch:IntervalMs</c> until
    /// <paramref name="stoppingToken"/> fires. A failure (database or broker away) is logged once per outage; the
    /// lead is given up with the connection and taken again when it works.
    /// </summary>
    public async Task RunAsync(CancellationToken stoppingToken)
    {
        if (_options.IntervalMs == 0)
        {
            return;
        }

        var interval = TimeSpan.FromMilliseconds(_options.IntervalMs);
        var failing = false;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await LeadAsync(interval, stoppingToken).ConfigureAwait(false);
                if (failing)
                {
                    failing = false;
                    LogRecovered();
                }

                await Task.Delay(LeaderRetry, _time, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
#pragma warning disable CA1031 // Whatever failed, the tasks are stored; the next try picks them up.
            catch (Exception ex) when (ex is not OutOfMemoryException)
#pragma warning restore CA1031
            {
                if (!failing)
                {
                    failing = true;
                    LogFailed(ex.GetType().Name, ex.Message);
                }

                try
                {
                    await Task.Delay(LeaderRetry, _time, stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
        }

    }

    /// <summary>Takes the lead if free and runs rounds on its connection until stopped; returns at once if another leads.</summary>
    private async Task LeadAsync(TimeSpan interval, CancellationToken stoppingToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(stoppingToken).ConfigureAwait(false);
        await using (var tryLock = new NpgsqlCommand(DispatchSql.TryLock, connection))
        {
            tryLock.Parameters.AddWithValue("key", DispatchSql.LockKey);
            if (!(bool)(await tryLock.ExecuteScalarAsync(stoppingToken).ConfigureAwait(false))!)
            {
                return;
            }
        }

        LogLeading();
        var state = new LeaderState(_time.GetTimestamp());
        try
        {
            using var timer = new PeriodicTimer(interval, _time);
            do
            {
                await RoundAsync(connection, state, stoppingToken).ConfigureAwait(false);
            }
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
        }
        finally
        {
            if (connection.State == System.Data.ConnectionState.Open)
            {
                try
                {
                    await using var unlock = new NpgsqlCommand(DispatchSql.Unlock, connection);
                    unlock.Parameters.AddWithValue("key", DispatchSql.LockKey);
                    await unlock.ExecuteScalarAsync(CancellationToken.None).ConfigureAwait(false);
                }
                catch (NpgsqlException)
                {
                    // The connection is broken: PostgreSQL released the lock with it.
                }
            }
        }
    }

    /// <summary>One round over every lane with waiting dispatched tasks. Internal for tests.</summary>
    internal async Task RoundAsync(NpgsqlConnection connection, LeaderState state, CancellationToken cancellationToken)
    {
        var now = _time.GetTimestamp();
        var elapsed = _time.GetElapsedTime(state.LastRoundAt, now);
        state.LastRoundAt = now;

        var lanes = new List<string>();
        await using (var command = new NpgsqlCommand(DispatchSql.WaitingLanes, connection))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                lanes.Add(reader.GetString(0));
            }
        }

        var limits = await _limits.GetAsync(cancellationToken).ConfigureAwait(false);
        state.Refill(limits, elapsed);
        if (lanes.Count == 0 && state.Lanes.Count == 0)
        {
            await WriteBlockedAsync(connection, state, limits, now, cancellationToken).ConfigureAwait(false);
            return;
        }

        var active = await ReadActiveAsync(connection, cancellationToken).ConfigureAwait(false);
        foreach (var lane in lanes.Union(state.Lanes.Keys).ToList())
        {
            var laneState = state.LaneOf(lane);
            var outstanding = active.OutstandingIn(lane);
            laneState.Measure(outstanding, elapsed, _options);
            var budget = laneState.Target - outstanding;
            if (!lanes.Contains(lane))
            {
                // Nothing waits in it any more: keep measuring its drain only while something of it is outstanding.
                if (outstanding == 0)
                {
                    state.Lanes.Remove(lane);
                }

                continue;
            }

            if (budget <= 0)
            {
                continue;
            }

            var published = await DispatchLaneAsync(connection, state, limits, active, lane, budget, now, cancellationToken).ConfigureAwait(false);
            laneState.Published(published);
        }

        await WriteBlockedAsync(connection, state, limits, now, cancellationToken).ConfigureAwait(false);
    }

    private async Task<int> DispatchLaneAsync(
        NpgsqlConnection connection, LeaderState state, LimitSnapshot limits, ActiveCounts active, string lane, int budget, long now, CancellationToken cancellationToken)
    {
        // What each limited type and tenant may still start in this round: the bucket's whole tokens and the room
        // below max_running. Those with none are left out of the query, so they do not crowd out the others.
        var typeRoom = RoomsFor(limits.Types, state.TypeBuckets, active.ByType);
        var tenantRoom = RoomsFor(limits.Tenants, state.TenantBuckets, active.ByTenant);
        foreach (var (key, room) in typeRoom.Where(r => r.Value.Count == 0))
        {
            state.MarkBlocked(LimitScopes.Type, key, room.Reason, now);
        }

        foreach (var (key, room) in tenantRoom.Where(r => r.Value.Count == 0))
        {
            state.MarkBlocked(LimitScopes.Tenant, key, room.Reason, now);
        }

        var candidates = new List<OutgoingTask>();
        await using (var command = new NpgsqlCommand(DispatchSql.Next, connection))
        {
            var perLine = Math.Max(1, (int)Math.Ceiling((double)budget / Math.Max(1, state.LastLineCount)));
            command.Parameters.AddWithValue("queue", lane);
            command.Parameters.AddWithValue("k", Math.Min(budget, perLine + 8));
            command.Parameters.AddWithValue("k_old", Math.Min(budget, 4));
            command.Parameters.AddWithValue("aging_seconds", _options.AgingSeconds);
            command.Parameters.AddWithValue("salt", state.NextSalt());
            command.Parameters.AddWithValue("limit", budget);
            command.Parameters.AddWithValue("blocked_types", typeRoom.Where(r => r.Value.Count == 0).Select(r => r.Key).ToArray());
            command.Parameters.AddWithValue("blocked_tenants", tenantRoom.Where(r => r.Value.Count == 0).Select(r => r.Key).ToArray());
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                candidates.Add(TaskRows.ReadOutgoing(reader));
            }
        }

        state.LastLineCount = Math.Max(1, candidates.Select(c => c.Message.Tenant).Distinct().Count());
        var chosen = new List<OutgoingTask>(candidates.Count);
        foreach (var task in candidates)
        {
            var message = task.Message;
            if (!Fits(typeRoom, message.Type) || !Fits(tenantRoom, message.Tenant))
            {
                if (typeRoom.TryGetValue(message.Type ?? "", out var t) && t.Count == 0)
                {
                    state.MarkBlocked(LimitScopes.Type, message.Type!, t.Reason, now);
                }

                if (message.Tenant is not null && tenantRoom.TryGetValue(message.Tenant, out var n) && n.Count == 0)
                {
                    state.MarkBlocked(LimitScopes.Tenant, message.Tenant, n.Reason, now);
                }

                continue;
            }

            Take(typeRoom, message.Type);
            Take(tenantRoom, message.Tenant);
            state.Spend(limits, message);
            chosen.Add(task with { Queue = TaskQueues.DispatchQueueOf(lane) });
        }

        if (chosen.Count == 0)
        {
            return 0;
        }

        var error = await _publisher.PublishAndStampAsync(chosen, cancellationToken).ConfigureAwait(false);
        if (error is not null)
        {
            throw new TaskPublishException([.. chosen.Select(t => t.Message.TaskId)], error);
        }

        LogDispatched(chosen.Count, lane);
        return chosen.Count;
    }

    private static Dictionary<string, Room> RoomsFor(IReadOnlyDictionary<string, TaskLimitRule> rules, Dictionary<string, double> buckets, IReadOnlyDictionary<string, int> running)
    {
        var rooms = new Dictionary<string, Room>(rules.Count, StringComparer.Ordinal);
        foreach (var (key, rule) in rules)
        {
            var count = int.MaxValue;
            string reason = LimitReasons.Rate;
            if (rule.PerSecond is not null)
            {
                count = (int)Math.Floor(buckets.GetValueOrDefault(key, rule.EffectiveBurst));
            }

            if (rule.MaxRunning is { } max)
            {
                var left = Math.Max(0, max - running.GetValueOrDefault(key));
                if (left < count)
                {
                    count = left;
                    reason = LimitReasons.Concurrency;
                }
            }

            rooms[key] = new Room(count, reason);
        }

        return rooms;
    }

    private static bool Fits(Dictionary<string, Room> rooms, string? key) =>
        key is null || !rooms.TryGetValue(key, out var room) || room.Count > 0;

    private static void Take(Dictionary<string, Room> rooms, string? key)
    {
        if (key is not null && rooms.TryGetValue(key, out var room))
        {
            rooms[key] = room with { Count = room.Count - 1 };
        }
    }

    private static async Task<ActiveCounts> ReadActiveAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        var counts = new ActiveCounts();
        await using var command = new NpgsqlCommand(DispatchSql.Active, connection);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            counts.Add(reader.GetString(0), reader.IsDBNull(1) ? null : reader.GetString(1), reader.GetString(2), (int)reader.GetInt64(3), (int)reader.GetInt64(4));
        }

        return counts;
    }

    /// <summary>Writes to <c>fleet.limits</c> the blocked states that changed since the last write.</summary>
    private async Task WriteBlockedAsync(NpgsqlConnection connection, LeaderState state, LimitSnapshot limits, long now, CancellationToken cancellationToken)
    {
        foreach (var rule in limits.Types.Values.Concat(limits.Tenants.Values))
        {
            var id = (rule.Scope, rule.Key);
            var reason = state.Blocked.TryGetValue(id, out var blocked) && _time.GetElapsedTime(blocked.At, now) < BlockedHold ? blocked.Reason : null;
            if (state.Written.TryGetValue(id, out var written) ? written == reason : reason is null && state.WroteOnce)
            {
                continue;
            }

            await using var command = new NpgsqlCommand(DispatchSql.SetBlocked, connection);
            command.Parameters.AddWithValue("scope", rule.Scope);
            command.Parameters.AddWithValue("key", rule.Key);
            command.Parameters.Add(new NpgsqlParameter("reason", NpgsqlTypes.NpgsqlDbType.Text) { Value = (object?)reason ?? DBNull.Value });
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            state.Written[id] = reason;
        }

        state.WroteOnce = true;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Dispatcher: this process leads (publishes tasks with a tenant, a priority or a limit)")]
    private partial void LogLeading();

    [LoggerMessage(Level = LogLevel.Debug, Message = "Dispatcher: published {Count} tasks of {Lane}")]
    private partial void LogDispatched(int count, string lane);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Dispatcher failed ({ErrorType}: {Reason}); dispatched tasks wait, and it tries again every second")]
    private partial void LogFailed(string errorType, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Dispatcher works again")]
    private partial void LogRecovered();

    /// <summary>What a limited type or tenant may still start this round, and what stops it when that is 0.</summary>
    private readonly record struct Room(int Count, string Reason);

    /// <summary>The leader's memory: per lane the measured start rate and target, per limit its bucket and blocked state.</summary>
    internal sealed class LeaderState(long startedAt)
    {
        private long _round;

        public long LastRoundAt { get; set; } = startedAt;

        public Dictionary<string, LaneState> Lanes { get; } = new(StringComparer.Ordinal);

        public Dictionary<string, double> TypeBuckets { get; } = new(StringComparer.Ordinal);

        public Dictionary<string, double> TenantBuckets { get; } = new(StringComparer.Ordinal);

        public Dictionary<(string Scope, string Key), (string Reason, long At)> Blocked { get; } = [];

        public Dictionary<(string Scope, string Key), string?> Written { get; } = [];

        public bool WroteOnce { get; set; }

        public int LastLineCount { get; set; } = 1;

        public LaneState LaneOf(string lane) => Lanes.TryGetValue(lane, out var state) ? state : Lanes[lane] = new LaneState();

        public string NextSalt() => (++_round).ToString(System.Globalization.CultureInfo.InvariantCulture);

        public void MarkBlocked(string scope, string key, string reason, long now) => Blocked[(scope, key)] = (reason, now);

        /// <summary>Adds <paramref name="elapsed"/>'s tokens to every rate-limited bucket, up to its burst; drops removed limits' buckets.</summary>
        public void Refill(LimitSnapshot limits, TimeSpan elapsed)
        {
            RefillAll(limits.Types, TypeBuckets, elapsed);
            RefillAll(limits.Tenants, TenantBuckets, elapsed);
        }

        public void Spend(LimitSnapshot limits, Contracts.ProcessTask message)
        {
            if (message.Type is { } type && limits.Types.TryGetValue(type, out var t) && t.PerSecond is not null)
            {
                TypeBuckets[type] = TypeBuckets.GetValueOrDefault(type, t.EffectiveBurst) - 1;
            }

            if (message.Tenant is { } tenant && limits.Tenants.TryGetValue(tenant, out var n) && n.PerSecond is not null)
            {
                TenantBuckets[tenant] = TenantBuckets.GetValueOrDefault(tenant, n.EffectiveBurst) - 1;
            }
        }

        private static void RefillAll(IReadOnlyDictionary<string, TaskLimitRule> rules, Dictionary<string, double> buckets, TimeSpan elapsed)
        {
            foreach (var key in buckets.Keys.Where(k => !rules.TryGetValue(k, out var r) || r.PerSecond is null).ToList())
            {
                buckets.Remove(key);
            }

            foreach (var (key, rule) in rules)
            {
                if (rule.PerSecond is { } perSecond)
                {
                    var level = buckets.GetValueOrDefault(key, rule.EffectiveBurst);
                    buckets[key] = Math.Min(rule.EffectiveBurst, level + (perSecond * elapsed.TotalSeconds));
                }
            }
        }
    }

    /// <summary>A lane's measured start rate and the outstanding count it aims at.</summary>
    internal sealed class LaneState
    {
        private int _lastOutstanding;
        private int _lastPublished;
        private double _rate;

        public int Target { get; private set; }

        /// <summary>
        /// Starts since the last round = what was outstanding then + what was published since - what is outstanding
        /// now; the target is that rate (smoothed) times <c>OutstandingSeconds</c>, doubled while the lane runs dry.
        /// </summary>
        public void Measure(int outstanding, TimeSpan elapsed, DispatchOptions options)
        {
            var started = Math.Max(0, _lastOutstanding + _lastPublished - outstanding);
            if (elapsed > TimeSpan.Zero)
            {
                _rate = (0.7 * _rate) + (0.3 * (started / elapsed.TotalSeconds));
            }

            var want = _rate * options.OutstandingSeconds;
            if (outstanding == 0 && _lastPublished > 0)
            {
                want = Math.Max(want, Target * 2.0);
            }

            Target = (int)Math.Clamp(Math.Ceiling(want), options.MinOutstanding, options.MaxOutstanding);
            _lastOutstanding = outstanding;
            _lastPublished = 0;
        }

        public void Published(int count) => _lastPublished += count;
    }

    /// <summary>Published-and-unfinished dispatched tasks, by lane (outstanding only), type and tenant (both states).</summary>
    internal sealed class ActiveCounts
    {
        private readonly Dictionary<string, int> _outstanding = new(StringComparer.Ordinal);

        public Dictionary<string, int> ByType { get; } = new(StringComparer.Ordinal);

        public Dictionary<string, int> ByTenant { get; } = new(StringComparer.Ordinal);

        public int OutstandingIn(string lane) => _outstanding.GetValueOrDefault(lane);

        public void Add(string lane, string? tenant, string type, int outstanding, int active)
        {
            _outstanding[lane] = _outstanding.GetValueOrDefault(lane) + outstanding;
            ByType[type] = ByType.GetValueOrDefault(type) + active;
            if (tenant is not null)
            {
                ByTenant[tenant] = ByTenant.GetValueOrDefault(tenant) + active;
            }
        }
    }
}

/// <summary>The reasons a limit gives for holding tasks back (<c>fleet.limits.blocked_reason</c>, <c>waitingFor</c>).</summary>
public static class LimitReasons
{
    public const string Rate = "rate-limit";

    public const string Concurrency = "concurrency-limit";
}
