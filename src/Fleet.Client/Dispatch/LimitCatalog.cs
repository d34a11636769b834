using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Fleet.Client;

/// <summary>One row of <c>fleet.limits</c>: a fleet-wide limit on the tasks of one type or one tenant.</summary>
/// <param name="Scope"><see cref="LimitScopes.Type"/> or <see cref="LimitScopes.Tenant"/>.</param>
/// <param name="PerSecond">The most starts per second; null for none.</param>
/// <param name="Burst">The token bucket's size; null for one second's worth (at least 1).</param>
/// <param name="MaxRunning">The most published or running at once; null for none.</param>
public sealed record TaskLimitRule(string Scope, string Key, double? PerSecond, int? Burst, int? MaxRunning)
{
    /// <summary>The bucket size in effect: <see cref="Burst"/>, else one second of <see cref="PerSecond"/>, at least 1.</summary>
    public double EffectiveBurst => Burst ?? Math.Max(1, Math.Ceiling(PerSecond ?? 1));
}

/// <summary>The two scopes a limit can have (<c>fleet.limits.scope</c>).</summary>
public static class LimitScopes
{
    public const string Type = "type";

    public const string Tenant = "tenant";
}

/// <summary>The limits at one moment, by type and by tenant.</summary>
public sealed class LimitSnapshot
{
    public static readonly LimitSnapshot Empty = new([]);

    public LimitSnapshot(IEnumerable<TaskLimitRule> rules)
    {
        ArgumentNullException.ThrowIfNull(rules);
        var all = rules.ToList();
        Types = all.Where(r => r.Scope == LimitScopes.Type).ToDictionary(r => r.Key, StringComparer.Ordinal);
        Tenants = all.Where(r => r.Scope == LimitScopes.Tenant).ToDictionary(r => r.Key, StringComparer.Ordinal);
    }

    public IReadOnlyDictionary<string, TaskLimitRule> Types { get; }

    public IReadOnlyDictionary<string, TaskLimitRule> Tenants { get; }

    public bool IsEmpty => Types.Count == 0 && Tenants.Count == 0;

    /// <summary>Whether tasks of <paramref name="type"/> are under a limit, so that the dispatcher must publish them.</summary>
    public bool IsLimitedType(string? type) => type is not null && Types.Count > 0 && Types.ContainsKey(type);
}

/// <summary>
/// <c>fleet.limits</c> as this process last read it, read again when the last read is older than <c>refresh</c>: a
/// submission asks it whether a task's type is limited (then the dispatcher publishes the task) with one query per
/// refresh, not per task. A limit added or removed takes effect within one refresh. Concurrent callers share one
/// read; when a read fails, the previous snapshot stays in effect (logged). Thread-safe.
/// </summary>
public sealed partial class LimitCatalog
{
    private const string SelectSql = "SELECT scope, key, per_second, burst, max_running FROM fleet.limits";

    private readonly NpgsqlDataSource _dataSource;
    private readonly TimeSpan _refresh;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private LimitSnapshot? _current;
    private long _readAt;
    private Task<LimitSnapshot>? _reading;

    public LimitCatalog(NpgsqlDataSource dataSource, TimeSpan refresh, TimeProvider? time = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        _dataSource = dataSource;
        _refresh = refresh;
        _time = time ?? TimeProvider.System;
        _logger = logger ?? NullLogger.Instance;
    }

    /// <summary>How often a submission's view of the limits is refreshed by default.</summary>
    public static readonly TimeSpan DefaultRefresh = TimeSpan.FromSeconds(5);

    /// <summary>The limits, read again first if the last read is older than the refresh interval.</summary>
    public async ValueTask<LimitSnapshot> GetAsync(CancellationToken cancellationToken = default)
    {
        Task<LimitSnapshot> reading;
        lock (_lock)
        {
            if (_current is { } current && _time.GetElapsedTime(_readAt) < _refresh)
            {
                return current;
            }

            reading = _reading ??= Task.Run(ReadAsync, CancellationToken.None);
        }

        return await reading.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task<LimitSnapshot> ReadAsync()
    {
        try
        {
            var rules = new List<TaskLimitRule>();
            await using (var command = _dataSource.CreateCommand(SelectSql))
            await using (var reader = await command.ExecuteReaderAsync().ConfigureAwait(false))
            {
                while (await reader.ReadAsync().ConfigureAwait(false))
                {
                    rules.Add(new TaskLimitRule(
                        reader.GetString(0), reader.GetString(1),
                        reader.IsDBNull(2) ? null : reader.GetDouble(2),
                        reader.IsDBNull(3) ? null : reader.GetInt32(3),
                        reader.IsDBNull(4) ? null : reader.GetInt32(4)));
                }
            }

            var snapshot = new LimitSnapshot(rules);
            lock (_lock)
            {
                _current = snapshot;
                _readAt = _time.GetTimestamp();
                _reading = null;
            }

            return snapshot;
        }
        catch (Exception ex)
        {
            lock (_lock)
            {
                _reading = null;
            }

            if (_current is { } previous)
            {
                // Keep what was read last; the next call tries again.
                LogReadFailed(ex.GetType().Name, ex.Message);
                return previous;
            }

            throw;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Reading fleet.limits failed ({ErrorType}: {Reason}); the limits read before stay in effect")]
    private partial void LogReadFailed(string errorType, string reason);
}
