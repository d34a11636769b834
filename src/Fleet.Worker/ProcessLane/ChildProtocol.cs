using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Fleet.Worker.ProcessLane;

/// <summary>
/// What a worker and its process-lane children say to each other over the child's standard input and output
/// (docs/architecture.md, "The process lane"). Every message is one frame: a 4-byte big-endian length N (at most
/// <see cref="MaxFrameBytes"/>), then N bytes of a UTF-8 JSON object with an <c>op</c>:
/// <list type="bullet">
/// <item>child to worker, once at start: <c>{"op":"ready","pid":1234}</c>;</item>
/// <item>worker to child: <c>{"op":"run","taskId":"…","type":"sha256","payload":{…},"attempt":1}</c> (and <c>batchId</c>,
///   <c>afterTaskId</c>, <c>afterBatchId</c> when set: the handler's <c>TaskContext</c>), one at a time;</item>
/// <item>worker to child, while a task runs: <c>{"op":"cancel","taskId":"…"}</c> (its time limit or a cancel fired);</item>
/// <item>child to worker, while a task runs, at most every <see cref="ProgressInterval"/> and only when its handler
///   reported: <c>{"op":"progress","taskId":"…","fraction":0.5,"note":"…"}</c>, the latest report;</item>
/// <item>child to worker, once per run: <c>{"op":"done","taskId":"…","ok":true,"output":{…},"cpuMs":…,"wallMs":…}</c>,
///   or with <c>"ok":false</c> the handler's <c>errorType</c> and <c>errorMessage</c>, and <c>validation</c> or
///   <c>cancelled</c> when that is how it ended.</item>
/// </list>
/// The end of the child's input (the worker closed it, or died) tells the child to exit.
/// </summary>
internal static class ChildProtocol
{
    /// <summary>The largest frame either side accepts: far above any task message the broker carries.</summary>
    public const int MaxFrameBytes = 256 * 1024 * 1024;

    /// <summary>How often a child sends its running task's latest progress report, if there is a new one.</summary>
    public static readonly TimeSpan ProgressInterval = TimeSpan.FromMilliseconds(250);

    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public static async Task WriteAsync<T>(Stream stream, T message, CancellationToken cancellationToken)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(message, Json);
        var frame = new byte[4 + body.Length];
        BinaryPrimitives.WriteInt32BigEndian(frame, body.Length);
        body.CopyTo(frame, 4);
        await stream.WriteAsync(frame, cancellationToken).ConfigureAwait(false);
        await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The next frame's JSON, or null at the end of the stream (also in the middle of a frame).</summary>
    public static async Task<T?> ReadAsync<T>(Stream stream, CancellationToken cancellationToken)
        where T : class
    {
        var header = new byte[4];
        if (!await FillAsync(stream, header, cancellationToken).ConfigureAwait(false))
        {
            return null;
        }

        var length = BinaryPrimitives.ReadInt32BigEndian(header);
        if (length is < 2 or > MaxFrameBytes)
        {
            throw new InvalidDataException($"A process-lane frame of {length} bytes is outside 2..{MaxFrameBytes}: the stream is not the lane's protocol.");
        }

        var body = new byte[length];
        return await FillAsync(stream, body, cancellationToken).ConfigureAwait(false)
            ? JsonSerializer.Deserialize<T>(body, Json)
            : null;
    }

    private static async Task<bool> FillAsync(Stream stream, byte[] buffer, CancellationToken cancellationToken)
    {
        for (var read = 0; read < buffer.Length;)
        {
            var n = await stream.ReadAsync(buffer.AsMemory(read), cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                return false;
            }

            read += n;
        }

        return true;
    }
}

/// <summary>A frame from the worker to a child.</summary>
internal sealed record ChildRequest(string Op, Guid TaskId, string? Type = null, JsonElement? Payload = null)
{
    public const string Run = "run";
    public const string Cancel = "cancel";

    public int? Attempt { get; init; }

    public Guid? BatchId { get; init; }

    public Guid? AfterTaskId { get; init; }

    public Guid? AfterBatchId { get; init; }
}

/// <summary>A frame from a child to the worker.</summary>
internal sealed record ChildReply(string Op)
{
    public const string Ready = "ready";
    public const string Done = "done";
    public const string Progress = "progress";

    /// <summary>A progress frame's fraction, 0 to 1.</summary>
    public double? Fraction { get; init; }

    /// <summary>A progress frame's note.</summary>
    public string? Note { get; init; }

    public int? Pid { get; init; }

    public Guid TaskId { get; init; }

    public bool Ok { get; init; }

    public JsonElement? Output { get; init; }

    public string? ErrorType { get; init; }

    public string? ErrorMessage { get; init; }

    public bool Validation { get; init; }

    /// <summary>The handler refused the task (<c>TaskRefusedException</c>): final, with <see cref="ErrorType"/>.</summary>
    public bool Refused { get; init; }

    public bool Cancelled { get; init; }

    public double? CpuMs { get; init; }

    public double WallMs { get; init; }
}
