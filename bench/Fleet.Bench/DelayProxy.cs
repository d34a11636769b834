using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Fleet.Bench;

/// <summary>
/// A TCP forwarder that holds every byte for a fixed time in each direction, so that the workers connected through
/// it are as far from PostgreSQL and RabbitMQ as a server one round trip (twice <c>oneWay</c>) away. It stands in
/// for <c>tc netem</c>, which kernels without the sch_netem module do not have (the development machines among
/// them). Each direction of each connection has its own thread that sleeps until a chunk is due (clock_nanosleep,
/// tens of microseconds late at most on an idle core) and then writes it, so chunks keep their order and the delay
/// does not limit the bandwidth. An end of stream is forwarded after the same delay, as a half-close.
/// </summary>
internal sealed partial class DelayProxy : IDisposable
{
    private const int ChunkBytes = 64 * 1024;

    private readonly long delayTicks;
    private readonly CancellationTokenSource stop = new();
    private readonly List<Socket> listeners = [];
    private readonly ConcurrentDictionary<Socket, byte> connected = new();

    public DelayProxy(TimeSpan oneWay)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new BenchException("the delay proxy sleeps with clock_nanosleep: Linux only");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(oneWay.Ticks);
        delayTicks = (long)(oneWay.TotalSeconds * Stopwatch.Frequency);
    }

    /// <summary>Listens on 127.0.0.1 (<paramref name="port"/> 0: a free port) and forwards each connection to <paramref name="target"/>.</summary>
    public IPEndPoint Forward(IPEndPoint target, int port = 0)
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            listener.Bind(new IPEndPoint(IPAddress.Loopback, port));
            listener.Listen(512);
        }
        catch
        {
            listener.Dispose();
            throw;
        }

        lock (listeners)
        {
            listeners.Add(listener);
        }

        _ = AcceptAsync(listener, target);
        return (IPEndPoint)listener.LocalEndPoint!;
    }

    /// <summary>
    /// Median and 99th percentile of <paramref name="count"/> one-byte round trips through this proxy to an in-process
    /// echo listener, in milliseconds: the distance the workers behind it really see (the sleeps wake a little late).
    /// </summary>
    public async Task<(double P50, double P99)> MeasureRoundTripAsync(int count, CancellationToken cancellationToken)
    {
        using var echo = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        echo.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        echo.Listen(1);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await client.ConnectAsync(Forward((IPEndPoint)echo.LocalEndPoint!), cancellationToken).ConfigureAwait(false);
        using var server = await echo.AcceptAsync(cancellationToken).ConfigureAwait(false);
        server.NoDelay = true;
        var echoing = Task.Run(async () =>
        {
            var one = new byte[1];
            while (await server.ReceiveAsync(one, SocketFlags.None, cancellationToken).ConfigureAwait(false) > 0)
            {
                await server.SendAsync(one, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            }
        }, cancellationToken);
        var times = new double[count];
        var buffer = new byte[1];
        for (var i = 0; i < count; i++)
        {
            var started = Stopwatch.GetTimestamp();
            await client.SendAsync(buffer, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (await client.ReceiveAsync(buffer, SocketFlags.None, cancellationToken).ConfigureAwait(false) == 0)
            {
                throw new BenchException("the delay proxy closed its own test connection");
            }

            times[i] = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        }

        client.Shutdown(SocketShutdown.Send);
        await echoing.ConfigureAwait(false);
        Array.Sort(times);
        return (times[count / 2], times[Math.Min(count - 1, (int)(count * 0.99))]);
    }

    public void Dispose()
    {
        stop.Cancel();
        lock (listeners)
        {
            listeners.ForEach(l => l.Dispose());
        }

        foreach (var socket in connected.Keys)
        {
            socket.Dispose();
        }

        stop.Dispose();
    }

    private async Task AcceptAsync(Socket listener, IPEndPoint target)
    {
        while (!stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(stop.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            _ = ConnectAsync(client, target);
        }
    }

    private async Task ConnectAsync(Socket client, IPEndPoint target)
    {
        // Small requests and replies are the whole point: Nagle's algorithm would add its own delay on top.
        client.NoDelay = true;
        var server = new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await server.ConnectAsync(target, stop.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
        {
            // The client sees its connection closed, as it would if the server refused it.
            client.Dispose();
            server.Dispose();
            return;
        }

        connected[client] = 0;
        connected[server] = 0;
        var directionsLeft = 2;
        void DirectionEnded()
        {
            if (Interlocked.Decrement(ref directionsLeft) == 0)
            {
                connected.TryRemove(client, out _);
                connected.TryRemove(server, out _);
                client.Dispose();
                server.Dispose();
            }
        }

        Pipe(client, server, DirectionEnded);
        Pipe(server, client, DirectionEnded);
    }

    /// <summary>Reads <paramref name="from"/> as data arrives, and writes each chunk to <paramref name="to"/> once it is due.</summary>
    private void Pipe(Socket from, Socket to, Action ended)
    {
        var chunks = new BlockingCollection<(long Due, byte[] Buffer, int Length)>();
        var writer = new Thread(() =>
        {
            // Linux lets a sleeping thread wake up to 50 us late (timer slack) to batch wake-ups; here that would be
            // a tenth of the delay. One nanosecond of slack is the least it takes.
            _ = SetTimerSlack(PrSetTimerSlack, 1, 0, 0, 0);
            try
            {
                foreach (var (due, buffer, length) in chunks.GetConsumingEnumerable())
                {
                    SleepUntil(due);
                    try
                    {
                        for (var sent = 0; sent < length;)
                        {
                            sent += to.Send(buffer, sent, length - sent, SocketFlags.None);
                        }
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(buffer);
                    }
                }

                to.Shutdown(SocketShutdown.Send);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                // The other side is gone: so is this connection, both ways.
                from.Dispose();
                to.Dispose();
            }
            finally
            {
                // The collection is not disposed: the reader may still be adding to it; it holds no handle until waited on.
                ended();
            }
        })
        { IsBackground = true, Name = "delay-proxy" };
        writer.Start();
        _ = ReadAsync(from, chunks);
    }

    private async Task ReadAsync(Socket from, BlockingCollection<(long Due, byte[] Buffer, int Length)> chunks)
    {
        try
        {
            while (true)
            {
                var buffer = ArrayPool<byte>.Shared.Rent(ChunkBytes);
                var read = await from.ReceiveAsync(buffer, SocketFlags.None, stop.Token).ConfigureAwait(false);
                if (read == 0)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    return;
                }

                chunks.Add((Stopwatch.GetTimestamp() + delayTicks, buffer, read));
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException or InvalidOperationException)
        {
            // A reset or a closed socket ends this direction like an end of stream; the writer closes what is left.
        }
        finally
        {
            chunks.CompleteAdding();
        }
    }

    /// <summary>Sleeps until the Stopwatch timestamp <paramref name="due"/>; Thread.Sleep's whole milliseconds are too coarse.</summary>
    private static void SleepUntil(long due)
    {
        for (var left = due - Stopwatch.GetTimestamp(); left > 0; left = due - Stopwatch.GetTimestamp())
        {
            var nanoseconds = (long)(left * (1_000_000_000.0 / Stopwatch.Frequency));
            var request = new TimeSpec { Seconds = nanoseconds / 1_000_000_000, Nanoseconds = nanoseconds % 1_000_000_000 };
            _ = ClockNanoSleep(ClockMonotonic, 0, in request, IntPtr.Zero); // EINTR: the loop sleeps the rest
        }
    }

    private const int ClockMonotonic = 1;
    private const int PrSetTimerSlack = 29;

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_nanosleep")]
    private static partial int ClockNanoSleep(int clockId, int flags, in TimeSpec request, IntPtr remaining);

    [LibraryImport("libc", EntryPoint = "prctl")]
    private static partial int SetTimerSlack(int option, nuint slackNanoseconds, nuint unused3, nuint unused4, nuint unused5);
}
