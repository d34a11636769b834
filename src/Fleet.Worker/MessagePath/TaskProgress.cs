using System.Collections.Concurrent;
using System.Text;
using Fleet.Persistence;
using Fleet.Tasks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;

namespace Fleet.Worker.MessagePath;

/// <summary>
/// The worker's <see cref="ITaskProgressSink"/>: it keeps only the latest report of each task, in memory, and
/// <see cref="ProgressFlusher"/> writes what is pending every <c>Worker:ProgressFlushMilliseconds</c> in one
/// statement. A handler may report in a tight loop: a report costs a dictionary write, never a database round trip,
/// and a handler that never reports costs nothing here at all (no entry, no write).
/// </summary>
public sealed class TaskProgress : ITaskProgressSink
{
    /// <summary>The longest note stored (<c>fleet.tasks.progress_note</c> is <c>varchar(200)</c>).</summary>
    public const int MaxNoteLength = 200;

    private readonly ConcurrentDictionary<Guid, ProgressReport> _pending = new();

    /// <summary>
    /// Keeps <paramref name="fraction"/>, clamped to 0..1, and <paramref name="note"/> as the task's latest report.
    /// NaN says nothing about how far a task is: it is ignored. The note is made storable when it is written, so that
    /// only the reports that reach the database pay for it.
    /// </summary>
    public void Report(Guid taskId, double fraction, string? note)
    {
        if (double.IsNaN(fraction))
        {
            return;
        }

        _pending[taskId] = new ProgressReport(Math.Clamp(fraction, 0, 1), note, DateTimeOffset.UtcNow);
    }

    /// <summary>
    /// Drops the task's pending report: its execution ended, and its final write must not be followed by a progress
    /// write (the flush writes only to <c>running</c> rows anyway). On an empty dictionary this takes no lock.
    /// </summary>
    public void Forget(Guid taskId) => _pending.TryRemove(taskId, out _);

    /// <summary>Takes every pending report out, each as storable as the database needs it.</summary>
    public List<(Guid TaskId, ProgressReport Report)> TakePending()
    {
        var taken = new List<(Guid, ProgressReport)>();
        foreach (var taskId in _pending.Keys)
        {
            // What is removed is what is written: a report that arrives after this is pending for the next flush.
            if (_pending.TryRemove(taskId, out var report))
            {
                taken.Add((taskId, report with { Note = StorableNote(report.Note) }));
            }
        }

        return taken;
    }

    /// <summary>Puts back reports a flush could not write, unless a newer report of the task arrived meanwhile.</summary>
    public void Restore(IEnumerable<(Guid TaskId, ProgressReport Report)> reports)
    {
        ArgumentNullException.ThrowIfNull(reports);
        foreach (var (taskId, report) in reports)
        {
            _pending.TryAdd(taskId, report);
        }
    }

    /// <summary>
    /// A note as one storable line: control characters (line breaks, tabs, escapes) become spaces, so that it shows
    /// as one line in psql and on the dashboard, then NUL-free, surrogate-safe and cut to <see cref="MaxNoteLength"/>.
    /// </summary>
    internal static string? StorableNote(string? note)
    {
        if (note is null)
        {
            return null;
        }

        if (note.AsSpan().ContainsAnyInRange('\0', '\u001F') || note.AsSpan().ContainsAnyInRange('\u007F', '\u009F'))
        {
            var line = new StringBuilder(note.Length);
            foreach (var c in note)
            {
                line.Append(char.IsControl(c) ? ' ' : c);
            }

            note = line.ToString();
        }

        return StorableForm.Text(note, MaxNoteLength);
    }

    /// <summary>One report: the fraction (0..1), the note as the handler gave it, and when it was made (the worker's clock).</summary>
    public sealed record ProgressReport(double Fraction, string? Note, DateTimeOffset At);
}

/// <summary>
/// Writes the pending progress reports of <see cref="TaskProgress"/> every <c>Worker:ProgressFlushMilliseconds</c>: one
/// <c>UPDATE ... FROM unnest(...)</c> for all tasks, only to rows still <c>running</c>, so that a report never touches a
/// final task (nor a retry waiting in <c>queued</c>). No pending report, no statement.
/// </summary>
public sealed partial class ProgressFlusher(
    TaskProgress progress,
    NpgsqlDataSource dataSource,
    IOptions<WorkerOptions> options,
    ILogger<ProgressFlusher> logger) : BackgroundService
{
    private const string UpdateSql = """
        UPDATE fleet.tasks t
        SET progress = u.progress, progress_note = u.note, progress_at = u.at
        FROM unnest(@id, @progress, @note, @at) AS u(id, progress, note, at)
        WHERE t.id = u.id AND t.status = 'running'
        """;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(options.Value.ProgressFlushMilliseconds));
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                await FlushAsync(stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Writes what is pending now; returns how many rows took a report.</summary>
    public async Task<int> FlushAsync(CancellationToken cancellationToken)
    {
        var reports = progress.TakePending();
        if (reports.Count == 0)
        {
            return 0;
        }

        try
        {
            await using var command = dataSource.CreateCommand(UpdateSql);
            command.Parameters.Add(new NpgsqlParameter("id", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { Value = reports.Select(r => r.TaskId).ToArray() });
            command.Parameters.Add(new NpgsqlParameter("progress", NpgsqlDbType.Array | NpgsqlDbType.Double) { Value = reports.Select(r => r.Report.Fraction).ToArray() });
            command.Parameters.Add(new NpgsqlParameter("note", NpgsqlDbType.Array | NpgsqlDbType.Text) { Value = reports.Select(r => r.Report.Note).ToArray() });
            command.Parameters.Add(new NpgsqlParameter("at", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { Value = reports.Select(r => r.Report.At).ToArray() });
            return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (NpgsqlException ex)
        {
            // The database may be restarting: the reports wait for the next flush, unless newer ones replace them.
            // Progress is advisory; nothing waits for it.
            progress.Restore(reports);
            LogFlushFailed(reports.Count, ex.Message);
            return 0;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Progress write of {Count} tasks failed, kept for the next one: {Reason}")]
    private partial void LogFlushFailed(int count, string reason);
}
