using System.Net;
using System.Net.Sockets;
using System.Text;
using Fleet.Client;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests;

/// <summary>
/// http-get's network guard (Worker:HttpGet:AllowedNetworks / DeniedNetworks) in real worker processes against a real
/// local HTTP server: the address connected to is checked, whatever name the URL gave.
/// </summary>
public sealed class HttpGetGuardTests(FleetFixture fleet) : OwnWorkersTest(fleet)
{
    [Fact]
    public async Task ALoopbackTarget_IsFetchedByDefault_AndRefusedByAWorkerThatDeniesLoopback_ByAddressOrByName()
    {
        using var server = new CountingHttpServer();
        var settings = Fleet.WorkerSettings("guard-default", cpuConcurrency: 1);
        settings["Worker:HttpGet:AllowedHosts:1"] = "localhost";

        // The default denies link-local, metadata and unspecified addresses only: the local server is fetched.
        await using (var open = WorkerProcess.Start(settings))
        {
            var allowed = await Fleet.Client.SubmitAsync(TaskRequest.Create("http-get", new { url = server.Url("127.0.0.1"), timeoutMs = 5000 }));
            var info = await Fleet.Client.WaitAsync(allowed, DefaultWait);
            Assert.True(info!.Status == "succeeded", $"{info.Status}: {info.ErrorType}: {info.ErrorMessage}\n{open.Output}");
            Assert.Equal(1, server.Connections);
            Assert.Equal(0, await open.TerminateAsync(TimeSpan.FromSeconds(30)));
        }

        settings["Worker:HostName"] = "guard-closed";
        settings["Worker:HttpGet:DeniedNetworks:0"] = "loopback";
        await using var closed = WorkerProcess.Start(settings);
        var byAddress = await Fleet.Client.SubmitAsync(TaskRequest.Create("http-get", new { url = server.Url("127.0.0.1") + "?token=t0ken", timeoutMs = 5000 }) with { MaxAttempts = 3 });
        var byName = await Fleet.Client.SubmitAsync(TaskRequest.Create("http-get", new { url = server.Url("localhost"), timeoutMs = 5000 }) with { MaxAttempts = 3 });

        foreach (var (id, host) in new[] { (byAddress, "127.0.0.1"), (byName, "localhost") })
        {
            var info = await Fleet.Client.WaitAsync(id, DefaultWait);
            Assert.Equal("failed", info!.Status);
            Assert.Equal("HttpGetTargetDenied", info.ErrorType);
            Assert.Equal(1, info.Attempts); // final at once: the same address would be refused again
            Assert.StartsWith($"GET http://{host}:{server.Port}/page", info.ErrorMessage, StringComparison.Ordinal);
            Assert.Contains("127.0.0.1 (in 'loopback', listed in Worker:HttpGet:DeniedNetworks)", info.ErrorMessage, StringComparison.Ordinal);
            Assert.DoesNotContain("t0ken", info.ErrorMessage, StringComparison.Ordinal);
        }

        Assert.Contains("'localhost' resolves only to addresses http-get may not connect to: ", (await GetTaskAsync(byName))!.ErrorMessage, StringComparison.Ordinal);
        Assert.Equal(1, server.Connections); // the refused worker never connected
        Assert.Equal(0, await closed.TerminateAsync(TimeSpan.FromSeconds(30)));

        // In a process-lane child the refusal is as final: the child reports it, the worker records it.
        settings["Worker:HostName"] = "guard-child";
        settings["Worker:ProcessTypes:0"] = "http-get";
        await using var child = WorkerProcess.Start(settings);
        var inChild = await Fleet.Client.SubmitAsync(TaskRequest.Create("http-get", new { url = server.Url("127.0.0.1"), timeoutMs = 5000 }) with { MaxAttempts = 3 });
        var refused = await Fleet.Client.WaitAsync(inChild, DefaultWait);
        Assert.True((refused!.Status, refused.ErrorType, refused.Attempts) == ("failed", "HttpGetTargetDenied", 1),
            $"{refused.Status}, {refused.Attempts} attempts: {refused.ErrorType}: {refused.ErrorMessage}");
        Assert.Equal(1, server.Connections);
    }

    [Fact]
    public async Task AWorkerWithAnInvalidNetwork_RefusesToStart_NamingTheSetting()
    {
        var settings = Fleet.WorkerSettings("guard-invalid", cpuConcurrency: 1);
        settings["Worker:HttpGet:DeniedNetworks:0"] = "link-local,10.0.0.0/33";
        await using var worker = WorkerProcess.Start(settings);

        Assert.True(await EventuallyAsync(() => Task.FromResult(worker.HasExited), TimeSpan.FromSeconds(60)), "the worker should have refused to start");
        Assert.NotEqual(0, worker.ExitCode);
        Assert.Contains("Worker:HttpGet:DeniedNetworks: '10.0.0.0/33'", worker.Output, StringComparison.Ordinal);
    }

    /// <summary>Answers every request with 200 and a short body, on a free port of 127.0.0.1; counts connections.</summary>
    private sealed class CountingHttpServer : IDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private int _connections;

        public CountingHttpServer()
        {
            _listener.Start();
            _ = AcceptAsync();
        }

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        public int Connections => Volatile.Read(ref _connections);

        public string Url(string host) => $"http://{host}:{Port}/page";

        private async Task AcceptAsync()
        {
            while (true)
            {
                Socket socket;
                try
                {
                    socket = await _listener.AcceptSocketAsync();
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    return;
                }

                Interlocked.Increment(ref _connections);
                _ = ServeAsync(socket);
            }
        }

        private static async Task ServeAsync(Socket socket)
        {
            using (socket)
            {
                var buffer = new byte[8192];
                var request = "";
                while (!request.Contains("\r\n\r\n", StringComparison.Ordinal))
                {
                    var read = await socket.ReceiveAsync(buffer);
                    if (read == 0)
                    {
                        return;
                    }

                    request += Encoding.ASCII.GetString(buffer, 0, read);
                }

                await socket.SendAsync(Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"));
            }
        }

        public void Dispose() => _listener.Stop();
    }
}
