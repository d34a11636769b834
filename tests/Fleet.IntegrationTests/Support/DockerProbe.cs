using System.Net.Sockets;

namespace Fleet.IntegrationTests.Support;

/// <summary>
/// Asks "does a Docker engine answer?" without touching Testcontainers (whose settings probe the engine when
/// first loaded): GET /_ping on the engine's unix socket, 2 s at most. Never throws, never hangs.
/// </summary>
internal static class DockerProbe
{
    private static readonly TimeSpan PingTimeout = TimeSpan.FromSeconds(2);

    internal sealed record Answer(bool Available, string Detail, bool IsLocal);

    public static async Task<Answer> ProbeAsync()
    {
        var dockerHost = Environment.GetEnvironmentVariable("DOCKER_HOST");
        if (!string.IsNullOrWhiteSpace(dockerHost))
        {
            if (dockerHost.StartsWith("unix://", StringComparison.Ordinal))
            {
                return await PingUnixSocketAsync(dockerHost["unix://".Length..]).ConfigureAwait(false);
            }

            if (Uri.TryCreate(dockerHost.Replace("tcp://", "http://", StringComparison.Ordinal), UriKind.Absolute, out var tcp) && tcp.Scheme == Uri.UriSchemeHttp)
            {
                // A TLS-protected remote engine is assumed to answer if its port does; Testcontainers does the rest.
                var open = await CanConnectAsync(tcp.Host, tcp.Port).ConfigureAwait(false);
                return new Answer(open, $"DOCKER_HOST={dockerHost} {(open ? "answers" : "does not answer")}", IsLocal: false);
            }

            return new Answer(false, $"DOCKER_HOST={dockerHost} is not a unix:// or tcp:// address", IsLocal: false);
        }

        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        var runtimeDirectory = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR");
        var sockets = new List<string> { "/var/run/docker.sock" };
        if (!string.IsNullOrEmpty(runtimeDirectory))
        {
            sockets.Add(Path.Combine(runtimeDirectory, "docker.sock"));
        }

        if (!string.IsNullOrEmpty(home))
        {
            sockets.Add(Path.Combine(home, ".docker", "run", "docker.sock"));
            sockets.Add(Path.Combine(home, ".docker", "desktop", "docker.sock"));
        }

        var existing = sockets.Where(File.Exists).ToList();
        if (existing.Count == 0)
        {
            return new Answer(false, "no Docker socket (" + string.Join(", ", sockets) + ")", IsLocal: true);
        }

        var details = new List<string>();
        foreach (var socket in existing)
        {
            var answer = await PingUnixSocketAsync(socket).ConfigureAwait(false);
            if (answer.Available)
            {
                return answer;
            }

            details.Add(answer.Detail);
        }

        return new Answer(false, string.Join("; ", details), IsLocal: true);
    }

    private static async Task<Answer> PingUnixSocketAsync(string path)
    {
        if (!File.Exists(path))
        {
            return new Answer(false, $"{path} does not exist", IsLocal: true);
        }

        try
        {
            using var handler = new SocketsHttpHandler
            {
                ConnectCallback = async (_, cancellationToken) =>
                {
                    var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                    try
                    {
                        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken).ConfigureAwait(false);
                        return new NetworkStream(socket, ownsSocket: true);
                    }
                    catch
                    {
                        socket.Dispose();
                        throw;
                    }
                },
            };
            using var client = new HttpClient(handler) { Timeout = PingTimeout };
            using var response = await client.GetAsync(new Uri("http://docker/_ping")).ConfigureAwait(false);
            var body = await response.Content.ReadAsStringAsync().ConfigureAwait(false);
            return response.IsSuccessStatusCode
                ? new Answer(true, $"Docker engine at {path} answered _ping: {body.Trim()}", IsLocal: true)
                : new Answer(false, $"Docker engine at {path} answered _ping with {(int)response.StatusCode}", IsLocal: true);
        }
        catch (Exception exception) when (exception is HttpRequestException or SocketException or IOException or TaskCanceledException or UnauthorizedAccessException)
        {
            return new Answer(false, $"{path}: {exception.GetType().Name}: {exception.Message}", IsLocal: true);
        }
    }

    private static async Task<bool> CanConnectAsync(string host, int port)
    {
        using var client = new TcpClient();
        using var cancellation = new CancellationTokenSource(PingTimeout);
        try
        {
            await client.ConnectAsync(host, port, cancellation.Token).ConfigureAwait(false);
            return true;
        }
        catch (Exception exception) when (exception is SocketException or OperationCanceledException)
        {
            return false;
        }
    }
}
