using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using Fleet.Client;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests;

/// <summary>Every built-in type, submitted through <see cref="FleetClient"/>, ends succeeded with the reference output.</summary>
public sealed class BuiltInTypesTests(FleetFixture fleet) : FleetTest(fleet)
{
    public static TheoryData<string, string, string> ReferenceCases => new()
    {
        { "noop", "{}", "{}" },
        { "sha256", """{"size_kb":1024,"rounds":32,"seed":0}""", """{"digest":"1371ec7492f973e17aa9165d10539ad9c3a4700c6fe5488f36e0df07370ebfe9"}""" },
        { "sha256", """{"size_kb":1024,"rounds":32,"seed":7}""", """{"digest":"1031ff50e74edab1206d326f41a90b9132aed13d5e613a77aaac89d57a379128"}""" },
        { "sieve", """{"limit":2000000}""", """{"count":148933}""" },
        { "sleep", """{"ms":50}""", "{}" },
        { "heat", """{"n":32,"steps":50,"seed":0}""", """{"mean":0.32640884227560912,"max":0.5090895074556907}""" },
        { "heat", """{"n":256,"steps":1000,"seed":7}""", """{"mean":0.41170440981450385,"max":0.49960706784880221}""" },
    };

    [Theory]
    [MemberData(nameof(ReferenceCases))]
    public async Task Submit_EndsSucceeded_WithReferenceOutputAndOneAttempt(string type, string payload, string expected)
    {
        var id = await Fleet.Client.SubmitAsync(new TaskRequest(type, JsonDocument.Parse(payload).RootElement));

        var info = await Fleet.Client.WaitAsync(id, DefaultWait);

        Assert.NotNull(info);
        Assert.Equal("succeeded", info.Status);
        AssertJsonEquivalent(expected, info.Result!);
        Assert.Equal(1, info.Attempts);
        Assert.Equal(1L, await ScalarAsync<long>(
            "SELECT count(*) FROM fleet.task_attempts WHERE task_id = @id AND outcome = 'succeeded' AND finished_at IS NOT NULL", ("id", id)));
    }

    [Fact]
    public async Task HttpGet_FetchesAnAllowedLocalServer_AndRecordsStatusBytesAndDigest()
    {
        var body = new byte[100_000];
        Random.Shared.NextBytes(body);
        using var server = new OneFileHttpServer(body);

        var id = await Fleet.Client.SubmitAsync(TaskRequest.Create("http-get", new { url = server.Url, timeoutMs = 5000 }));
        var info = await Fleet.Client.WaitAsync(id, DefaultWait);

        Assert.Equal("succeeded", info!.Status);
        using var result = JsonDocument.Parse(info.Result!);
        Assert.Equal(200, result.RootElement.GetProperty("status").GetInt32());
        Assert.Equal(body.Length, result.RootElement.GetProperty("bytes").GetInt64());
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(body)), result.RootElement.GetProperty("sha256").GetString());
    }

    [Fact]
    public async Task HttpGet_ToAHostOutsideTheAllowList_EndsFailedWithoutAnyRequest()
    {
        var id = await Fleet.Client.SubmitAsync(TaskRequest.Create("http-get", new { url = "http://localhost:9/secret", timeoutMs = 1000 }));

        var info = await Fleet.Client.WaitAsync(id, DefaultWait);

        Assert.Equal("failed", info!.Status);
        Assert.Equal("ValidationError", info.ErrorType);
        Assert.Contains("localhost", info.ErrorMessage, StringComparison.Ordinal);
    }

    private static void AssertJsonEquivalent(string expected, string actual)
    {
        using var e = JsonDocument.Parse(expected);
        using var a = JsonDocument.Parse(actual);
        Assert.Equal(e.RootElement.EnumerateObject().Select(p => p.Name).Order(), a.RootElement.EnumerateObject().Select(p => p.Name).Order());
        foreach (var property in e.RootElement.EnumerateObject())
        {
            var other = a.RootElement.GetProperty(property.Name);
            if (property.Value.ValueKind == JsonValueKind.Number && property.Value.GetRawText().Contains('.', StringComparison.Ordinal))
            {
                var want = property.Value.GetDouble();
                Assert.True(Math.Abs(other.GetDouble() - want) <= Math.Abs(want) * 1e-12, $"{property.Name}: {other.GetDouble():R} != {want:R}");
            }
            else
            {
                Assert.Equal(property.Value.GetRawText(), other.GetRawText());
            }
        }
    }

    /// <summary>Serves one body over HTTP/1.1 on 127.0.0.1 with a free port.</summary>
    private sealed class OneFileHttpServer : IDisposable
    {
        private readonly HttpListener _listener = new();
        private readonly byte[] _body;

        public OneFileHttpServer(byte[] body)
        {
            _body = body;
            var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            var port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
            Url = $"http://127.0.0.1:{port}/file.bin";
            _listener.Prefixes.Add($"http://127.0.0.1:{port}/");
            _listener.Start();
            _ = ServeAsync();
        }

        public string Url { get; }

        private async Task ServeAsync()
        {
            while (_listener.IsListening)
            {
                HttpListenerContext context;
                try
                {
                    context = await _listener.GetContextAsync();
                }
                catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException)
                {
                    return;
                }

                context.Response.ContentLength64 = _body.Length;
                await context.Response.OutputStream.WriteAsync(_body);
                context.Response.Close();
            }
        }

        public void Dispose() => _listener.Close();
    }
}
