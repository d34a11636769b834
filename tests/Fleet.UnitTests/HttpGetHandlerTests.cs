using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Fleet.Tasks;
using Fleet.Tasks.BuiltIn;
using Microsoft.Extensions.DependencyInjection;

namespace Fleet.UnitTests;

public sealed class HttpGetHandlerTests
{
    [Fact]
    public async Task HttpGet_ReturnsStatusLengthAndDigestOfBody()
    {
        var body = Encoding.UTF8.GetBytes("hello from the fleet\n");
        await using var server = TinyHttpServer.Start(TinyHttpServer.Response(200, "OK", body));
        using var provider = BuiltInHandlers.CreateProvider();
        var handler = GetHandler(provider);

        var output = await HandlerRunner.RunAsync(handler, $$"""{"url":"{{server.Url("/data")}}","timeoutMs":5000}""");

        Assert.Equal(200, output.GetProperty("status").GetInt32());
        Assert.Equal(body.Length, output.GetProperty("bytes").GetInt64());
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(body)), output.GetProperty("sha256").GetString());
        Assert.Equal(3, output.EnumerateObject().Count());
        Assert.StartsWith("GET /data HTTP/1.1", server.Requests.Single(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task HttpGet_HashesLargeBodyWithoutContentLength()
    {
        var body = new byte[300_000];
        new Random(42).NextBytes(body);
        await using var server = TinyHttpServer.Start(TinyHttpServer.Response(200, "OK", body, sendContentLength: false));
        using var provider = BuiltInHandlers.CreateProvider();

        var output = await HandlerRunner.RunAsync(GetHandler(provider), $$"""{"url":"{{server.Url("/")}}"}""");

        Assert.Equal(body.Length, output.GetProperty("bytes").GetInt64());
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(body)), output.GetProperty("sha256").GetString());
    }

    [Fact]
    public async Task HttpGet_ReportsErrorStatusAsIs()
    {
        var body = Encoding.UTF8.GetBytes("missing");
        await using var server = TinyHttpServer.Start(TinyHttpServer.Response(404, "Not Found", body));
        using var provider = BuiltInHandlers.CreateProvider();

        var output = await HandlerRunner.RunAsync(GetHandler(provider), $$"""{"url":"{{server.Url("/nope")}}"}""");

        Assert.Equal(404, output.GetProperty("status").GetInt32());
        Assert.Equal(body.Length, output.GetProperty("bytes").GetInt64());
    }

    [Fact]
    public async Task HttpGet_DoesNotFollowRedirects()
    {
        await using var server = TinyHttpServer.Start(
            TinyHttpServer.Response(302, "Found", [], "Location: http://169.254.169.254/latest/meta-data/"));
        using var provider = BuiltInHandlers.CreateProvider();

        var output = await HandlerRunner.RunAsync(GetHandler(provider), $$"""{"url":"{{server.Url("/redirect")}}"}""");

        Assert.Equal(302, output.GetProperty("status").GetInt32());
        Assert.Equal(0, output.GetProperty("bytes").GetInt64());
        Assert.Single(server.Requests);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task HttpGet_Fails_WhenBodyExceedsMaxResponseBytes(bool sendContentLength)
    {
        await using var server = TinyHttpServer.Start(TinyHttpServer.Response(200, "OK", new byte[5000], sendContentLength: sendContentLength));
        using var provider = BuiltInHandlers.CreateProvider(options => options.MaxResponseBytes = 4096);
        var prepared = GetHandler(provider).Prepare(HandlerRunner.Payload($$"""{"url":"{{server.Url("/big")}}"}"""));

        var error = await Assert.ThrowsAsync<InvalidOperationException>(async () => await prepared(CancellationToken.None));

        Assert.Contains("4096", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HttpGet_Errors_NeverShowTheUrlsCredentialsOrQuery()
    {
        await using var big = TinyHttpServer.Start(TinyHttpServer.Response(200, "OK", new byte[5000], sendContentLength: true));
        await using var silent = TinyHttpServer.Start(response: null);
        using var provider = BuiltInHandlers.CreateProvider(options => options.MaxResponseBytes = 4096);
        static string Secret(string url) => url.Replace("http://", "http://user:s3cret@", StringComparison.Ordinal) + "?token=t0ken&sig=abc";

        var tooLarge = await Assert.ThrowsAsync<InvalidOperationException>(async () =>
            await GetHandler(provider).Prepare(HandlerRunner.Payload($$"""{"url":"{{Secret(big.Url("/big"))}}"}"""))(CancellationToken.None));
        var timedOut = await Assert.ThrowsAsync<TimeoutException>(async () =>
            await GetHandler(provider).Prepare(HandlerRunner.Payload($$"""{"url":"{{Secret(silent.Url("/slow"))}}","timeoutMs":50}"""))(CancellationToken.None));
        var invalid = Assert.Throws<TaskValidationException>(() =>
            GetHandler(provider).Prepare(HandlerRunner.Payload("""{"url":"ftp://user:s3cret@127.0.0.1/f?token=t0ken"}""")));

        foreach (var message in new[] { tooLarge.Message, timedOut.Message, invalid.Message })
        {
            Assert.DoesNotContain("s3cret", message, StringComparison.Ordinal);
            Assert.DoesNotContain("t0ken", message, StringComparison.Ordinal);
            Assert.Contains("127.0.0.1", message, StringComparison.Ordinal);
        }

        Assert.Contains("/big?(query hidden)", tooLarge.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HttpGet_ToADeniedAddress_IsRefusedWithoutAnyConnection_AndNamesTheAddressNotTheSecrets()
    {
        await using var server = TinyHttpServer.Start(TinyHttpServer.Response(200, "OK", [1, 2, 3]));
        using var provider = BuiltInHandlers.CreateProvider(options => options.DeniedNetworks = ["loopback"]);
        var handler = GetHandler(provider);
        var url = server.Url("/data").Replace("http://", "http://user:s3cret@", StringComparison.Ordinal) + "?token=t0ken";

        var ex = await Assert.ThrowsAsync<TaskRefusedException>(async () =>
            await handler.Prepare(HandlerRunner.Payload($$"""{"url":"{{url}}"}"""))(CancellationToken.None));

        Assert.Equal("HttpGetTargetDenied", ex.ErrorType);
        Assert.Contains("http-get may not connect to 127.0.0.1 (in 'loopback', listed in Worker:HttpGet:DeniedNetworks).", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cret", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("t0ken", ex.Message, StringComparison.Ordinal);
        Assert.Empty(server.Requests);
    }

    [Fact]
    public async Task HttpGet_AcceptsBodyOfExactlyMaxResponseBytes()
    {
        await using var server = TinyHttpServer.Start(TinyHttpServer.Response(200, "OK", new byte[4096], sendContentLength: false));
        using var provider = BuiltInHandlers.CreateProvider(options => options.MaxResponseBytes = 4096);

        var output = await HandlerRunner.RunAsync(GetHandler(provider), $$"""{"url":"{{server.Url("/")}}"}""");

        Assert.Equal(4096, output.GetProperty("bytes").GetInt64());
    }

    [Fact]
    public async Task HttpGet_FailsWithTimeout_WhenServerDoesNotAnswerInTime()
    {
        await using var server = TinyHttpServer.Start(response: null);
        using var provider = BuiltInHandlers.CreateProvider();
        var prepared = GetHandler(provider).Prepare(HandlerRunner.Payload($$"""{"url":"{{server.Url("/slow")}}","timeoutMs":50}"""));

        await Assert.ThrowsAsync<TimeoutException>(async () => await prepared(CancellationToken.None));
    }

    [Fact]
    public async Task HttpGet_StopsWaiting_WhenCancelled()
    {
        await using var server = TinyHttpServer.Start(response: null);
        using var provider = BuiltInHandlers.CreateProvider();
        var prepared = GetHandler(provider).Prepare(HandlerRunner.Payload($$"""{"url":"{{server.Url("/slow")}}","timeoutMs":120000}"""));
        using var cancellation = new CancellationTokenSource();

        var running = prepared(cancellation.Token).AsTask();
        await cancellation.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
    }

    [Theory]
    [InlineData("http://example.com/", "example.com")]
    [InlineData("http://127.0.0.1@10.0.0.5/", "10.0.0.5")]
    [InlineData("https://localhost:8443/x", "localhost")]
    [InlineData("http://[::1]/", "::1")]
    [InlineData("http://127.0.0.2/", "127.0.0.2")]
    public void Prepare_RejectsHostNotAllowed_NamingTheHost(string url, string host)
    {
        using var provider = BuiltInHandlers.CreateProvider();

        var error = HandlerRunner.Reject(GetHandler(provider), $$"""{"url":"{{url}}"}""");

        Assert.Contains($"'{host}' is not allowed", error.Message, StringComparison.Ordinal);
        Assert.Contains("127.0.0.1", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Prepare_RejectsEveryHost_WhenAllowListIsEmpty()
    {
        using var provider = BuiltInHandlers.CreateProvider(options => options.AllowedHosts.Clear());

        var error = HandlerRunner.Reject(GetHandler(provider), """{"url":"http://127.0.0.1/"}""");

        Assert.Contains("no hosts are allowed", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Prepare_MatchesAllowedHostsCaseInsensitively()
    {
        using var provider = BuiltInHandlers.CreateProvider(options => options.AllowedHosts.Add("Data.Example.COM"));

        var prepared = GetHandler(provider).Prepare(HandlerRunner.Payload("""{"url":"https://data.example.com:8443/file"}"""));

        Assert.NotNull(prepared);
    }

    [Theory]
    [InlineData("""{"timeoutMs":1000}""", "url")]
    [InlineData("""{"url":"/relative/path"}""", "url")]
    [InlineData("""{"url":"ftp://127.0.0.1/file"}""", "url")]
    [InlineData("""{"url":"file:///etc/passwd"}""", "url")]
    [InlineData("""{"url":"not a url"}""", "url")]
    [InlineData("""{"url":42}""", "url")]
    [InlineData("""{"url":"http://127.0.0.1/","timeoutMs":0}""", "timeoutMs")]
    [InlineData("""{"url":"http://127.0.0.1/","timeoutMs":120001}""", "timeoutMs")]
    [InlineData("""{"url":"http://127.0.0.1/","timeoutMs":"fast"}""", "timeoutMs")]
    public void Prepare_RejectsInvalidUrlOrTimeout(string payload, string field)
    {
        using var provider = BuiltInHandlers.CreateProvider();

        var error = HandlerRunner.Reject(GetHandler(provider), payload);

        Assert.Contains(field, error.Message, StringComparison.Ordinal);
    }

    private static ITaskHandler GetHandler(ServiceProvider provider)
    {
        Assert.True(provider.GetRequiredService<TaskHandlerRegistry>().TryGet(HttpGetHandler.TypeName, out var handler));
        return handler;
    }

    /// <summary>
    /// A one-purpose HTTP/1.1 server on 127.0.0.1 and a free port: reads each request head and answers with a fixed
    /// response, then closes the connection. With no response it holds the connection open and never answers.
    /// </summary>
    private sealed class TinyHttpServer : IAsyncDisposable
    {
        private readonly TcpListener _listener;
        private readonly byte[]? _response;
        private readonly CancellationTokenSource _stopping = new();
        private readonly System.Collections.Concurrent.ConcurrentQueue<string> _requests = new();
        private readonly Task _acceptLoop;

        private TinyHttpServer(byte[]? response)
        {
            _response = response;
            _listener = new TcpListener(IPAddress.Loopback, 0);
            _listener.Start();
            _acceptLoop = AcceptLoopAsync();
        }

        public IReadOnlyCollection<string> Requests => _requests;

        public static TinyHttpServer Start(byte[]? response) => new(response);

        public static byte[] Response(int status, string reason, byte[] body, params string[] headers) =>
            Response(status, reason, body, sendContentLength: true, headers);

        public static byte[] Response(int status, string reason, byte[] body, bool sendContentLength, params string[] headers)
        {
            var head = new StringBuilder()
                .Append(System.Globalization.CultureInfo.InvariantCulture, $"HTTP/1.1 {status} {reason}\r\n")
                .Append("Connection: close\r\n");
            if (sendContentLength)
            {
                head.Append(System.Globalization.CultureInfo.InvariantCulture, $"Content-Length: {body.Length}\r\n");
            }

            foreach (var header in headers)
            {
                head.Append(header).Append("\r\n");
            }

            head.Append("\r\n");
            return [.. Encoding.ASCII.GetBytes(head.ToString()), .. body];
        }

        public string Url(string path) => $"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}{path}";

        public async ValueTask DisposeAsync()
        {
            await _stopping.CancelAsync();
            _listener.Stop();
            try
            {
                await _acceptLoop;
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
            }

            _listener.Dispose();
            _stopping.Dispose();
        }

        private async Task AcceptLoopAsync()
        {
            var connections = new List<Task>();
            try
            {
                while (!_stopping.IsCancellationRequested)
                {
                    var client = await _listener.AcceptTcpClientAsync(_stopping.Token);
                    connections.Add(ServeAsync(client));
                }
            }
            finally
            {
                await Task.WhenAll(connections);
            }
        }

        private async Task ServeAsync(TcpClient client)
        {
            using var _ = client;
            try
            {
                var stream = client.GetStream();
                var head = new List<byte>();
                var buffer = new byte[4096];
                while (!EndsWithBlankLine(head))
                {
                    var read = await stream.ReadAsync(buffer, _stopping.Token);
                    if (read == 0)
                    {
                        return;
                    }

                    head.AddRange(buffer.AsSpan(0, read));
                }

                _requests.Enqueue(Encoding.ASCII.GetString([.. head]));
                if (_response is null)
                {
                    await Task.Delay(Timeout.Infinite, _stopping.Token);
                    return;
                }

                await stream.WriteAsync(_response, _stopping.Token);
                client.Client.Shutdown(SocketShutdown.Send);
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException)
            {
                // The client went away (timeouts, size limits) or the server is stopping.
            }
        }

        private static bool EndsWithBlankLine(List<byte> head) =>
            head.Count >= 4 && head[^4] == '\r' && head[^3] == '\n' && head[^2] == '\r' && head[^1] == '\n';
    }
}
