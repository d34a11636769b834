using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Fleet.Bench;

/// <summary>
/// The broker's memory during one run: <c>mem_used</c> of every node from the management API (<c>/api/nodes</c>;
/// the broker refreshes it every <c>collect_statistics_interval</c>, 5 s by default, so a short run may show one or two
/// readings) at the start and at its peak, and the peak RSS of the broker processes on this machine (VmHWM, reset at the
/// start: exact, but it also counts memory the Erlang allocators keep after a peak).
/// </summary>
internal sealed record BrokerMemory(long? MemUsedBeforeBytes, long? MemUsedPeakBytes, IReadOnlyDictionary<string, long> MemUsedPeakByNode, long? PeakRssBytes);

/// <summary>Samples <see cref="BrokerMemory"/> every second from <see cref="Start"/> until <see cref="StopAsync"/>.</summary>
internal sealed class BrokerMemorySampler
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);
    private readonly HttpClient? _http;
    private readonly IReadOnlyList<int> _pids;
    private readonly bool _rssReset;
    private readonly CancellationTokenSource _stop = new();
    private readonly Dictionary<string, long> _peakByNode = new(StringComparer.Ordinal);
    private Task _loop = Task.CompletedTask;
    private long? _before;
    private long? _peak;

    private BrokerMemorySampler(HttpClient? http, IReadOnlyList<int> pids)
    {
        _http = http;
        _pids = pids;
        _rssReset = pids.Count > 0 && pids.All(ProcessStats.TryResetPeakRss);
    }

    /// <summary>
    /// Starts sampling. <paramref name="http"/> null: no management API (only RSS); <paramref name="brokerPids"/>: the
    /// local broker node processes (none: only mem_used).
    /// </summary>
    public static BrokerMemorySampler Start(HttpClient? http, IReadOnlyList<int> brokerPids)
    {
        var sampler = new BrokerMemorySampler(http, brokerPids);
        sampler._loop = sampler.LoopAsync();
        return sampler;
    }

    public async Task<BrokerMemory> StopAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        await SampleAsync(CancellationToken.None).ConfigureAwait(false);
        _stop.Dispose();
        long? rss = _rssReset ? _pids.Sum(p => ProcessStats.PeakRssBytes(p) ?? 0) : null;
        return new BrokerMemory(_before, _peak, new Dictionary<string, long>(_peakByNode, StringComparer.Ordinal), rss);
    }

    /// <summary>A client for the management API at <paramref name="managementUrl"/> (credentials in its user info), or null.</summary>
    public static HttpClient? ManagementClient(string? managementUrl)
    {
        if (string.IsNullOrWhiteSpace(managementUrl))
        {
            return null;
        }

        var uri = new Uri(managementUrl.EndsWith('/') ? managementUrl : managementUrl + "/");
        var http = new HttpClient { BaseAddress = new Uri(uri.GetLeftPart(UriPartial.Authority) + uri.AbsolutePath), Timeout = TimeSpan.FromSeconds(5) };
        if (uri.UserInfo.Length > 0)
        {
            var credentials = Uri.UnescapeDataString(uri.UserInfo);
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(credentials)));
        }

        return http;
    }

    private async Task LoopAsync()
    {
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                await SampleAsync(_stop.Token).ConfigureAwait(false);
                await Task.Delay(Interval, _stop.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
    }

    private async Task SampleAsync(CancellationToken cancellationToken)
    {
        if (_http is null)
        {
            return;
        }

        Dictionary<string, long> byNode;
        try
        {
            await using var stream = await _http.GetStreamAsync(new Uri("api/nodes?columns=name,mem_used", UriKind.Relative), cancellationToken).ConfigureAwait(false);
            using var json = await JsonDocument.ParseAsync(stream, cancellationToken: cancellationToken).ConfigureAwait(false);
            byNode = json.RootElement.EnumerateArray()
                .Where(n => n.TryGetProperty("mem_used", out var m) && m.ValueKind == JsonValueKind.Number)
                .ToDictionary(n => n.GetProperty("name").GetString() ?? "?", n => n.GetProperty("mem_used").GetInt64(), StringComparer.Ordinal);
        }
        catch (Exception ex) when (ex is HttpRequestException or JsonException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            // A node down or a slow answer under load: this reading is missing, the others count.
            return;
        }

        if (byNode.Count == 0)
        {
            return;
        }

        var total = byNode.Values.Sum();
        _before ??= total;
        _peak = Math.Max(_peak ?? 0, total);
        foreach (var (node, bytes) in byNode)
        {
            _peakByNode[node] = Math.Max(_peakByNode.GetValueOrDefault(node), bytes);
        }
    }
}
