using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Fleet.Api.Models;
using Fleet.Client;
using Fleet.Client.Tls;

namespace Fleet.Api.Monitoring;

/// <summary>
/// Queue depths from the RabbitMQ management HTTP API (<c>GET /api/queues/{vhost}</c>): the only place that knows
/// how many messages wait (ready) and are held by consumers (unacked) in each queue, and how many consumers each
/// queue has. Only durable queues are reported; the auto-deleted ones are per-process plumbing (each worker's
/// control queue, MassTransit's bus endpoints). Every node of a cluster answers for the whole cluster, so with
/// several base URIs (<c>Api:RabbitMqManagementUri</c> comma-separated, one per node) a reading that fails on one
/// node is asked of the next, and the node that answered is asked first next time.
/// </summary>
public sealed class RabbitMqManagementClient
{
    public const string HttpClientName = "rabbitmq-management";

    private readonly HttpClient _http;
    private readonly IReadOnlyList<Endpoint> _endpoints;
    private readonly string _vhost;
    private int _current;

    public RabbitMqManagementClient(IHttpClientFactory httpClients, string? managementUri, RabbitMqAddress broker)
    {
        ArgumentNullException.ThrowIfNull(httpClients);
        ArgumentNullException.ThrowIfNull(broker);
        _http = httpClients.CreateClient(HttpClientName);
        _vhost = broker.VirtualHost;
        _endpoints = [.. SplitUris(managementUri).Select(uri => Endpoint.From(new Uri(uri), broker))];
    }

    /// <summary>The base URIs of a <c>Api:RabbitMqManagementUri</c> value: one, or several comma-separated (one per node).</summary>
    public static IReadOnlyList<string> SplitUris(string? managementUri) =>
        string.IsNullOrWhiteSpace(managementUri) ? [] : managementUri.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>The base addresses asked, without credentials, in the configured order.</summary>
    public IReadOnlyList<Uri> BaseAddresses => [.. _endpoints.Select(e => e.BaseAddress)];

    /// <summary>The queues of the fleet's vhost, or an error text (never with credentials) when no node answered.</summary>
    public async Task<(IReadOnlyList<QueueDepth> Queues, string? Error)> GetQueuesAsync(CancellationToken cancellationToken)
    {
        if (_endpoints.Count == 0)
        {
            return ([], "Api:RabbitMqManagementUri is not configured.");
        }

        var start = Volatile.Read(ref _current);
        var errors = new List<string>();
        for (var i = 0; i < _endpoints.Count; i++)
        {
            var index = (start + i) % _endpoints.Count;
            var (queues, error) = await ReadAsync(_endpoints[index], cancellationToken).ConfigureAwait(false);
            if (error is null)
            {
                Volatile.Write(ref _current, index);
                return (queues, null);
            }

            errors.Add(_endpoints.Count == 1 ? error : $"{_endpoints[index].BaseAddress}: {error}");
        }

        return ([], string.Join(" ", errors));
    }

    private async Task<(IReadOnlyList<QueueDepth> Queues, string? Error)> ReadAsync(Endpoint endpoint, CancellationToken cancellationToken)
    {
        var address = new Uri(endpoint.BaseAddress,
            $"api/queues/{Uri.EscapeDataString(_vhost)}?columns=name,durable,auto_delete,exclusive,messages_ready,messages_unacknowledged,consumers");
        using var request = new HttpRequestMessage(HttpMethod.Get, address);
        request.Headers.Authorization = endpoint.Authorization;
        try
        {
            using var response = await _http.SendAsync(request, cancellationToken).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                return ([], $"The RabbitMQ management API answered {(int)response.StatusCode} {response.ReasonPhrase}.");
            }

            await using var body = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
            using var document = await JsonDocument.ParseAsync(body, cancellationToken: cancellationToken).ConfigureAwait(false);
            var queues = new List<QueueDepth>();
            foreach (var queue in document.RootElement.EnumerateArray())
            {
                if (!Bool(queue, "durable") || Bool(queue, "auto_delete") || Bool(queue, "exclusive"))
                {
                    continue;
                }

                queues.Add(new QueueDepth(
                    queue.GetProperty("name").GetString() ?? "",
                    Long(queue, "messages_ready"),
                    Long(queue, "messages_unacknowledged"),
                    (int)Long(queue, "consumers")));
            }

            return ([.. queues.OrderBy(q => q.Name, StringComparer.Ordinal)], null);
        }
        catch (HttpRequestException ex) when (ServerCertificateException.FindIn(ex) is { } refused)
        {
            return ([], refused.Message);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested && ex is HttpRequestException or TaskCanceledException or JsonException or InvalidOperationException)
        {
            return ([], $"The RabbitMQ management API did not answer: {ex.GetType().Name}.");
        }
    }

    /// <summary>One node's base address (no credentials) and the header that carries its credentials.</summary>
    private sealed record Endpoint(Uri BaseAddress, AuthenticationHeaderValue Authorization)
    {
        public static Endpoint From(Uri uri, RabbitMqAddress broker)
        {
            // Credentials come from the URI's user info, else the AMQP user's (the same user usually has the
            // management tag). They go into a header, and the address kept for requests has none.
            var (user, password) = (broker.UserName, broker.Password);
            if (uri.UserInfo.Length > 0)
            {
                var parts = uri.UserInfo.Split(':', 2);
                user = Uri.UnescapeDataString(parts[0]);
                password = parts.Length > 1 ? Uri.UnescapeDataString(parts[1]) : "";
            }

            return new Endpoint(
                new UriBuilder(uri) { UserName = "", Password = "", Path = uri.AbsolutePath.TrimEnd('/') + "/" }.Uri,
                new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}"))));
        }
    }

    // Counters appear only after the broker's first statistics tick (5 s): a new queue has none yet.
    private static long Long(JsonElement queue, string name) =>
        queue.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number ? value.GetInt64() : 0;

    private static bool Bool(JsonElement queue, string name) =>
        queue.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.True;
}
