using System.Text.RegularExpressions;
using Fleet.Contracts;
using Npgsql;

namespace Fleet.Client;

/// <summary>
/// The task queues of a fleet and the lane each runs on: the built-in lanes <c>fleet-cpu</c> (<c>cpu</c>) and
/// <c>fleet-io</c> (<c>io</c>), and the queues operators declare for worker groups (the API's <c>Api:Queues</c>), which
/// the API writes to <c>fleet.queues</c> at its start (<see cref="DeclareAsync"/>) and everyone else reads there
/// (<see cref="ReadAsync"/>): the workers (how to run a queue they serve), the CLI (what it may pause, whose dead
/// letters to list). A queue's lane decides where its tasks run in a worker: <c>cpu</c> on the worker's CPU lane
/// threads, shared with <c>fleet-cpu</c>; <c>io</c> as concurrent async work.
/// </summary>
public sealed partial class QueueCatalog
{
    public const string CpuLane = "cpu";
    public const string IoLane = "io";

    /// <summary>What a declared queue's name must match (and the <c>ck_queues_name</c> constraint enforces).</summary>
    public const string NamePatternText = "^[a-z][a-z0-9-]{0,62}$";

    private readonly Dictionary<string, string> _lanes;

    private QueueCatalog(IEnumerable<KeyValuePair<string, string>> declared)
    {
        _lanes = new(StringComparer.Ordinal) { [TaskQueues.Cpu] = CpuLane, [TaskQueues.Io] = IoLane };
        foreach (var (name, lane) in declared.OrderBy(d => d.Key, StringComparer.Ordinal))
        {
            _lanes.TryAdd(name, lane);
        }

        Names = [.. _lanes.Keys];
        Declared = _lanes.Where(l => !IsBuiltIn(l.Key)).ToDictionary(StringComparer.Ordinal);
    }

    /// <summary>The built-in lanes only: what a fleet without declared queues has.</summary>
    public static QueueCatalog BuiltIn { get; } = new([]);

    /// <summary>Every queue: the built-in lanes first, then the declared ones by name.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>The declared queues (not the built-in lanes) and their lanes.</summary>
    public IReadOnlyDictionary<string, string> Declared { get; }

    /// <summary>
    /// A catalog of the built-in lanes and <paramref name="declared"/> (name to lane), checked as the API's options are:
    /// the first problem found throws.
    /// </summary>
    public static QueueCatalog Of(IReadOnlyDictionary<string, string> declared)
    {
        ArgumentNullException.ThrowIfNull(declared);
        foreach (var (name, lane) in declared)
        {
            if (Problem(name, lane) is { } problem)
            {
                throw new ArgumentException(problem, nameof(declared));
            }
        }

        return new QueueCatalog(declared);
    }

    /// <summary>Why <paramref name="name"/> with <paramref name="lane"/> cannot be declared; null when it can.</summary>
    public static string? Problem(string name, string? lane)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (IsBuiltIn(name) || name == TaskQueues.Control)
        {
            return $"'{name}' is a built-in queue of Fleet; declare queues of your own beside it.";
        }

        if (!NamePattern().IsMatch(name))
        {
            return $"The queue name '{name}' must be 1 to 63 lowercase letters, digits and '-', starting with a letter "
                + "(no '.' or '_': its dispatch queue is NAME.dispatch and its error queues NAME_error).";
        }

        return lane is CpuLane or IoLane ? null : $"The lane of queue '{name}' must be {CpuLane} or {IoLane}, not '{lane}'.";
    }

    public static bool IsBuiltIn(string queue) => queue is TaskQueues.Cpu or TaskQueues.Io;

    /// <summary>True for a queue of the catalog (not a dispatch or error queue).</summary>
    public bool Contains(string? queue) => queue is not null && _lanes.ContainsKey(queue);

    /// <summary>The lane of <paramref name="queue"/> or of the queue whose dispatch queue it is; null for an unknown queue.</summary>
    public string? LaneOf(string queue) => _lanes.GetValueOrDefault(TaskQueues.LaneOf(queue));

    /// <summary>True when <paramref name="queue"/> (or the queue whose dispatch queue it is) runs on the CPU lane.</summary>
    public bool IsCpu(string queue) => LaneOf(queue) == CpuLane;

    /// <summary>The queues of the catalog that run on the CPU lane.</summary>
    public IReadOnlyList<string> CpuQueues => [.. _lanes.Where(l => l.Value == CpuLane).Select(l => l.Key)];

    /// <summary>The queues as one phrase for error messages: <c>fleet-cpu, fleet-io, reports</c>.</summary>
    public override string ToString() => string.Join(", ", Names);

    /// <summary>Every row of <c>fleet.queues</c>: the built-in lanes and the queues declared so far.</summary>
    public static async Task<QueueCatalog> ReadAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        await using var command = dataSource.CreateCommand("SELECT name, lane FROM fleet.queues");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var rows = new List<KeyValuePair<string, string>>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            // The table's constraints hold names and lanes to what the API accepts.
            rows.Add(new(reader.GetString(0), reader.GetString(1)));
        }

        return new QueueCatalog(rows);
    }

    /// <summary>
    /// Writes the declared queues to <c>fleet.queues</c>: new ones are added, a changed lane is updated (workers take it
    /// at their next start), and rows no longer declared stay (tasks may still wait in them). Returns how many rows it
    /// added or changed.
    /// </summary>
    public async Task<int> DeclareAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        if (Declared.Count == 0)
        {
            return 0;
        }

        await using var command = dataSource.CreateCommand("""
            INSERT INTO fleet.queues AS q (name, lane)
            SELECT * FROM unnest(@names::text[], @lanes::text[])
            ON CONFLICT (name) DO UPDATE SET lane = excluded.lane, updated_at = now()
            WHERE q.lane <> excluded.lane
            """);
        command.Parameters.AddWithValue("names", Declared.Keys.ToArray());
        command.Parameters.AddWithValue("lanes", Declared.Values.ToArray());
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    [GeneratedRegex(NamePatternText, RegexOptions.CultureInvariant)]
    private static partial Regex NamePattern();
}
