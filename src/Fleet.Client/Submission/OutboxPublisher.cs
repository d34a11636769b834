using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;

namespace Fleet.Client;

/// <summary>
/// Steps 2 and 3 of a submission, and all of a relay round's publishing: sends stored tasks with publisher confirms
/// and stamps <c>published_at</c> on what the broker confirmed.
/// </summary>
internal sealed partial class OutboxPublisher(NpgsqlDataSource dataSource, ITaskPublisher publisher, TaskSubmitterOptions options, ILogger logger)
{
    /// <summary>
    /// Sends chunk by chunk; each chunk is stamped as soon as the broker has confirmed it. A failed stamp is only
    /// logged: the rows stay unpublished and the relay sends them again, which workers recognise as duplicates.
    /// Returns the publish failure, if any; the chunks after a failed one are not tried (the relay takes them).
    /// </summary>
    public async Task<Exception?> PublishAndStampAsync(List<OutgoingTask> tasks, CancellationToken cancellationToken)
    {
        var done = 0;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.PublishTimeout);
        foreach (var chunk in tasks.Chunk(options.ChunkSize))
        {
            try
            {
                await publisher.PublishAsync(chunk, timeout.Token).ConfigureAwait(false);
            }
#pragma warning disable CA1031 // Whatever the transport throws, the rows are stored: the caller learns it from the result.
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
#pragma warning restore CA1031
            {
                LogPublishFailed(tasks.Count - done, ex.GetType().Name, ex.Message);
                return ex;
            }

            try
            {
                await using var command = dataSource.CreateCommand(SubmissionSql.MarkPublished);
                command.Parameters.Add(SubmissionSql.Array("id", NpgsqlDbType.Uuid, chunk.Select(m => m.Message.TaskId)));
                command.Parameters.Add(SubmissionSql.Array("attempts", NpgsqlDbType.Integer, chunk.Select(m => m.Attempts)));
                await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (NpgsqlException ex)
            {
                LogStampFailed(chunk.Length, ex.Message);
            }

            done += chunk.Length;
        }

        return null;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Count} stored tasks were not confirmed by the broker ({ErrorType}: {Reason}); the relay will publish them")]
    private partial void LogPublishFailed(int count, string errorType, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Count} tasks were confirmed but published_at could not be stamped ({Reason}); the relay will send them again, and workers will skip the copies")]
    private partial void LogStampFailed(int count, string reason);
}
