using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Fleet.Bench;

namespace Fleet.IntegrationTests;

/// <summary>
/// The delay proxy that puts benchmark workers "1 ms away" from the servers: through it, a round trip takes at least
/// twice the one-way delay, a stream arrives whole and in order in both directions, and an end of stream reaches the
/// other side. Only the lower bound of the delay is asserted: an upper bound would be a speed claim on a shared machine.
/// </summary>
public sealed class DelayProxyTests : IAsyncLifetime
{
    private readonly Socket listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    private readonly CancellationTokenSource stop = new();

    /// <summary>A hung test fails within a minute instead of hanging the suite.</summary>
    private readonly CancellationTokenSource timeout = new(TimeSpan.FromMinutes(1));
    private Task echo = Task.CompletedTask;

    public Task InitializeAsync()
    {
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(16);
        echo = EchoAsync();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await stop.CancelAsync();
        listener.Dispose();
        await echo;
        stop.Dispose();
        timeout.Dispose();
    }

    [Fact]
    public async Task EachRoundTrip_TakesAtLeastTwiceTheOneWayDelay()
    {
        using var proxy = new DelayProxy(TimeSpan.FromMilliseconds(2));
        using var client = await ConnectAsync(proxy.Forward((IPEndPoint)listener.LocalEndPoint!));
        var reply = new byte[8];
        var times = new List<double>();
        for (var i = 0; i < 20; i++)
        {
            var started = Stopwatch.GetTimestamp();
            await client.SendAsync(BitConverter.GetBytes((long)i), SocketFlags.None, timeout.Token);
            await ReceiveExactlyAsync(client, reply);
            times.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            Assert.Equal(i, BitConverter.ToInt64(reply));
        }

        Assert.All(times, ms => Assert.True(ms >= 4.0, $"a round trip took {ms:0.000} ms through 2 ms each way"));
    }

    [Fact]
    public async Task AStream_ArrivesWholeAndInOrder_BothWays_AndItsEndReachesTheOtherSide()
    {
        using var proxy = new DelayProxy(TimeSpan.FromMilliseconds(0.5));
        using var client = await ConnectAsync(proxy.Forward((IPEndPoint)listener.LocalEndPoint!));
        var sent = RandomNumberGenerator.GetBytes(4 * 1024 * 1024);
        var ct = timeout.Token;

        // Sent in uneven pieces while the echo comes back, then half-closed: the echo server sees the end and closes.
        var sending = Task.Run(async () =>
        {
            for (var offset = 0; offset < sent.Length;)
            {
                var piece = Math.Min(sent.Length - offset, 1 + (offset % 70_001));
                offset += await client.SendAsync(sent.AsMemory(offset, piece), SocketFlags.None, ct);
            }

            client.Shutdown(SocketShutdown.Send);
        }, ct);
        var received = new MemoryStream();
        var buffer = new byte[32 * 1024];
        int read;
        while ((read = await client.ReceiveAsync(buffer, SocketFlags.None, ct)) > 0)
        {
            received.Write(buffer, 0, read);
        }

        await sending;
        Assert.Equal(sent.Length, received.Length);
        Assert.True(sent.AsSpan().SequenceEqual(received.ToArray()), "the echoed stream differs from the one sent");
    }

    [Fact]
    public async Task AConnectionToAClosedPort_IsClosedForTheClientToo()
    {
        using var proxy = new DelayProxy(TimeSpan.FromMilliseconds(0.5));
        int closedPort;
        using (var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            // A port that listened a moment ago and no longer does.
            probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            closedPort = ((IPEndPoint)probe.LocalEndPoint!).Port;
        }

        using var client = await ConnectAsync(proxy.Forward(new IPEndPoint(IPAddress.Loopback, closedPort)));
        var buffer = new byte[1];
        int read;
        try
        {
            read = await client.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
        }
        catch (SocketException)
        {
            read = 0;
        }

        Assert.Equal(0, read);
    }

    private async Task<Socket> ConnectAsync(IPEndPoint endpoint)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(endpoint, timeout.Token);
        return socket;
    }

    private async Task ReceiveExactlyAsync(Socket socket, byte[] buffer)
    {
        for (var offset = 0; offset < buffer.Length;)
        {
            var read = await socket.ReceiveAsync(buffer.AsMemory(offset), SocketFlags.None, timeout.Token);
            Assert.True(read > 0, "the connection closed early");
            offset += read;
        }
    }

    /// <summary>Echoes every connection's bytes back until it ends, then closes it.</summary>
    private async Task EchoAsync()
    {
        var connections = new List<Task>();
        try
        {
            while (true)
            {
                var socket = await listener.AcceptAsync(stop.Token);
                connections.Add(Task.Run(async () =>
                {
                    using (socket)
                    {
                        var buffer = new byte[16 * 1024];
                        int read;
                        while ((read = await socket.ReceiveAsync(buffer, SocketFlags.None, stop.Token)) > 0)
                        {
                            await socket.SendAsync(buffer.AsMemory(0, read), SocketFlags.None, stop.Token);
                        }
                    }
                }));
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
        {
            // The test is over.
        }

        await Task.WhenAll(connections).ContinueWith(_ => { }, TaskScheduler.Default);
    }
}
