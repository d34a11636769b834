using System.Buffers.Binary;
using System.Text.Json;
using Fleet.Tasks;
using Fleet.Tasks.BuiltIn;
using Fleet.Worker;
using Fleet.Worker.ProcessLane;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Fleet.UnitTests;

/// <summary>The frames a worker and its process-lane children exchange (<see cref="ChildProtocol"/>).</summary>
public sealed class ProcessLaneProtocolTests
{
    [Fact]
    public async Task Frames_RoundTrip_InOrder_OverOneStream()
    {
        var taskId = Guid.NewGuid();
        var payload = JsonSerializer.SerializeToElement(new { size_kb = 4, text = "é\u0000\"}" });
        var output = JsonSerializer.SerializeToElement(new { digest = new string('a', 64) });
        using var stream = new MemoryStream();
        await ChildProtocol.WriteAsync(stream, new ChildRequest(ChildRequest.Run, taskId, "sha256", payload), CancellationToken.None);
        await ChildProtocol.WriteAsync(stream, new ChildRequest(ChildRequest.Cancel, taskId), CancellationToken.None);
        await ChildProtocol.WriteAsync(stream, new ChildReply(ChildReply.Done) { TaskId = taskId, Ok = true, Output = output, CpuMs = 1.5, WallMs = 2.5 }, CancellationToken.None);
        stream.Position = 0;

        var run = await ChildProtocol.ReadAsync<ChildRequest>(stream, CancellationToken.None);
        var cancel = await ChildProtocol.ReadAsync<ChildRequest>(stream, CancellationToken.None);
        var done = await ChildProtocol.ReadAsync<ChildReply>(stream, CancellationToken.None);

        Assert.Equal((ChildRequest.Run, taskId, "sha256"), (run!.Op, run.TaskId, run.Type));
        Assert.Equal(payload.GetRawText(), run.Payload!.Value.GetRawText());
        Assert.Equal((ChildRequest.Cancel, taskId, null), (cancel!.Op, cancel.TaskId, cancel.Type));
        Assert.Null(cancel.Payload);
        Assert.Equal((ChildReply.Done, taskId, true, 1.5, 2.5), (done!.Op, done.TaskId, done.Ok, done.CpuMs, done.WallMs));
        Assert.Equal(output.GetRawText(), done.Output!.Value.GetRawText());
        Assert.Null(await ChildProtocol.ReadAsync<ChildReply>(stream, CancellationToken.None));
    }

    [Fact]
    public async Task AFrame_IsALengthPrefix_ThenItsJson()
    {
        using var stream = new MemoryStream();
        await ChildProtocol.WriteAsync(stream, new ChildReply(ChildReply.Ready) { Pid = 42 }, CancellationToken.None);

        var bytes = stream.ToArray();
        var length = BinaryPrimitives.ReadInt32BigEndian(bytes);
        Assert.Equal(bytes.Length - 4, length);
        using var json = JsonDocument.Parse(bytes.AsMemory(4));
        Assert.Equal("ready", json.RootElement.GetProperty("op").GetString());
        Assert.Equal(42, json.RootElement.GetProperty("pid").GetInt32());
    }

    [Theory]
    [InlineData(0)] // nothing at all: the other side closed between frames
    [InlineData(2)] // half a length prefix
    [InlineData(4)] // the prefix, and none of the body
    [InlineData(10)] // part of the body
    public async Task TheEndOfTheStream_AnywhereInAFrame_ReadsAsNull(int keep)
    {
        using var whole = new MemoryStream();
        await ChildProtocol.WriteAsync(whole, new ChildReply(ChildReply.Done) { TaskId = Guid.NewGuid(), Ok = true }, CancellationToken.None);
        Assert.True(whole.Length > keep);

        // A pipe delivers what the dying side wrote, in pieces: one byte per read finds the same end.
        using var cut = new TrickleStream(whole.ToArray().AsSpan(0, keep).ToArray());

        Assert.Null(await ChildProtocol.ReadAsync<ChildReply>(cut, CancellationToken.None));
    }

    [Theory]
    [InlineData(ChildProtocol.MaxFrameBytes + 1)]
    [InlineData(int.MaxValue)]
    [InlineData(-1)]
    [InlineData(0)]
    [InlineData(1)]
    public async Task ALengthOutsideTheBounds_IsRefused(int length)
    {
        var header = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(header, length);
        using var stream = new MemoryStream([.. header, .. "{\"op\":\"done\"}"u8.ToArray()]);

        var refused = await Assert.ThrowsAsync<InvalidDataException>(() => ChildProtocol.ReadAsync<ChildReply>(stream, CancellationToken.None));
        Assert.Contains(length.ToString(System.Globalization.CultureInfo.InvariantCulture), refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AFrameThatIsNotJson_Throws_RatherThanReadingAsAMessage()
    {
        var body = "not json"u8.ToArray();
        var header = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(header, body.Length);
        using var stream = new MemoryStream([.. header, .. body]);

        await Assert.ThrowsAnyAsync<JsonException>(() => ChildProtocol.ReadAsync<ChildReply>(stream, CancellationToken.None));
    }

    /// <summary>A stream that returns at most one byte per read, as a pipe may.</summary>
    private sealed class TrickleStream(byte[] bytes) : MemoryStream(bytes)
    {
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            base.ReadAsync(buffer[..Math.Min(1, buffer.Length)], cancellationToken);
    }
}

/// <summary>Which types a worker runs in its process lane: the configured ones and the handlers that declare it.</summary>
public sealed class ProcessLaneTypesTests
{
    [Fact]
    public async Task ATypeRunsInTheProcessLane_WhenConfigured_OrWhenItsHandlerDeclaresIt_AndNoOtherDoes()
    {
        var registry = new TaskHandlerRegistry([new Sha256Handler(), new SieveHandler(), new DeclaringHandler()]);
        var options = Options.Create(new WorkerOptions { CpuConcurrency = 2, ProcessTypes = [" sieve "] });
        await using var pool = new ProcessPool(options, registry, NullLogger<ProcessPool>.Instance);

        Assert.True(pool.Runs("sieve"), "configured (names are trimmed)");
        Assert.True(pool.Runs(DeclaringHandler.TypeName), "declared by [ProcessLane]");
        Assert.False(pool.Runs("sha256"));
        Assert.Equal(["declares-process-lane", "sieve"], pool.Types);
        Assert.Equal(2, pool.Slots);
        Assert.Equal(0, pool.LiveChildren); // children start when a task first needs one
    }

    [ProcessLane]
    private sealed class DeclaringHandler : CpuTaskHandler<Empty, Empty>
    {
        public const string TypeName = "declares-process-lane";

        public override string Type => TypeName;

        protected override Empty Execute(Empty input, CancellationToken cancellationToken) => Empty.Instance;
    }
}
