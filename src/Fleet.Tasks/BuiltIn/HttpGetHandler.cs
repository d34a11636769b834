using System.Buffers;
using System.Collections.Frozen;
using System.ComponentModel.DataAnnotations;
using System.Security.Cryptography;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Options;

namespace Fleet.Tasks.BuiltIn;

/// <summary>
/// <c>http-get</c>: fetches <c>url</c> with a GET and returns <c>{"status": int, "bytes": long, "sha256": hex}</c>
/// of the response body. Only hosts in <see cref="HttpGetOptions.AllowedHosts"/> may be fetched, so a payload
/// cannot make workers reach internal addresses, and only at addresses <see cref="HttpGetTargetGuard"/> permits
/// (checked on the address connected to, whatever the name resolved to before). Redirects are not followed (the named client is configured with
/// <c>AllowAutoRedirect = false</c>); a 3xx, like any other status, is reported as is, not as a failure.
/// </summary>
public sealed class HttpGetHandler : TaskHandler<HttpGetInput, HttpGetOutput>
{
    /// <summary>The type name.</summary>
    public const string TypeName = "http-get";

    /// <summary>The name of the <see cref="IHttpClientFactory"/> client this handler uses.</summary>
    public const string HttpClientName = "fleet-http-get";

    /// <summary>Default per-task timeout when the payload has no <c>timeoutMs</c>.</summary>
    public const int DefaultTimeoutMs = 10_000;

    /// <summary>Largest accepted <c>timeoutMs</c>: two minutes.</summary>
    public const long MaxTimeoutMs = 120_000;

    private const int BufferSize = 64 * 1024;

    private readonly IHttpClientFactory _httpClientFactory;
    private readonly FrozenSet<string> _allowedHosts;
    private readonly long _maxResponseBytes;

    public HttpGetHandler(IHttpClientFactory httpClientFactory, IOptions<HttpGetOptions> options)
    {
        ArgumentNullException.ThrowIfNull(httpClientFactory);
        ArgumentNullException.ThrowIfNull(options);
        var value = options.Value;
        _httpClientFactory = httpClientFactory;
        _allowedHosts = value.AllowedHosts
            .Where(static host => !string.IsNullOrWhiteSpace(host))
            .Select(static host => host.Trim())
            .ToFrozenSet(StringComparer.OrdinalIgnoreCase);
        _maxResponseBytes = value.MaxResponseBytes > 0
            ? value.MaxResponseBytes
            : throw new ArgumentOutOfRangeException(nameof(options), value.MaxResponseBytes, "HttpGetOptions.MaxResponseBytes must be positive.");
    }

    public override string Type => TypeName;

    public override TaskLane Lane => TaskLane.Io;

    protected override void Validate(HttpGetInput input)
    {
        _ = ParseAllowedUri(input.Url);
        TaskValidationException.ThrowIfOutOfRange(input.TimeoutMs, 1, MaxTimeoutMs, "timeoutMs");
    }

    protected override async ValueTask<HttpGetOutput> ExecuteAsync(HttpGetInput input, CancellationToken cancellationToken)
    {
        var uri = ParseAllowedUri(input.Url);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromMilliseconds(input.TimeoutMs));

        var client = _httpClientFactory.CreateClient(HttpClientName);

        // The task's own timeout (timeoutMs, up to 2 minutes) governs, not HttpClient's 100 s default.
        client.Timeout = Timeout.InfiniteTimeSpan;
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, uri);
            using var response = await client
                .SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token)
                .ConfigureAwait(false);

            var declaredLength = response.Content.Headers.ContentLength;
            if (declaredLength > _maxResponseBytes)
            {
                throw TooLarge(uri, $"declares {declaredLength} bytes");
            }

            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            long total = 0;
            var buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
            try
            {
                var body = await response.Content.ReadAsStreamAsync(timeout.Token).ConfigureAwait(false);
                await using (body.ConfigureAwait(false))
                {
                    int read;
                    while ((read = await body.ReadAsync(buffer.AsMemory(0, BufferSize), timeout.Token).ConfigureAwait(false)) > 0)
                    {
                        total += read;
                        if (total > _maxResponseBytes)
                        {
                            throw TooLarge(uri, "is longer");
                        }

                        hash.AppendData(buffer, 0, read);
                    }
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }

            return new HttpGetOutput
            {
                Status = (int)response.StatusCode,
                Bytes = total,
                Sha256 = Convert.ToHexStringLower(hash.GetHashAndReset()),
            };
        }
        catch (HttpRequestException ex) when (ex.InnerException is HttpGetTargetDeniedException denied)
        {
            // The operator's rule, not a passing fault: final, with its own error type, never retried.
            throw new TaskRefusedException(HttpGetTargetGuard.ErrorType, $"GET {ForMessage(uri)} refused: {denied.Message}", ex);
        }
        catch (OperationCanceledException ex) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            // Our own timeout, not the worker's cancel or time limit: report it as a plain failure, not as a cancellation.
            throw new TimeoutException($"GET {ForMessage(uri)} did not complete within timeoutMs = {input.TimeoutMs}.", ex);
        }
    }

    private InvalidOperationException TooLarge(Uri uri, string what) =>
        new($"The response body of GET {ForMessage(uri)} {what} than the limit of {_maxResponseBytes} bytes (HttpGetOptions.MaxResponseBytes).");

    /// <summary>
    /// A URL as error messages show it (they are stored in <c>error_message</c> and logged): without its user
    /// information (<c>user:password@</c>) and without its query, where API keys and signed tokens travel.
    /// </summary>
    internal static string ForMessage(Uri uri) =>
        $"{uri.Scheme}://{uri.Authority}{uri.AbsolutePath}{(uri.Query.Length > 1 ? "?(query hidden)" : "")}";

    /// <summary>Text refused as a URL, as an error message shows it: the same parts hidden, at most 200 characters.</summary>
    internal static string ForMessage(string url)
    {
        var query = url.IndexOfAny(['?', '#']);
        var head = query >= 0 ? url[..query] : url;
        var authority = head.IndexOf("://", StringComparison.Ordinal) is var scheme and >= 0 ? scheme + 3 : 0;
        var at = head.IndexOf('@', authority);
        if (at >= 0)
        {
            head = head[..authority] + "(hidden)" + head[at..];
        }

        var shown = query >= 0 ? head + "?(query hidden)" : head;
        return shown.Length > 200 ? shown[..200] + "..." : shown;
    }

    private Uri ParseAllowedUri(string url)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri)
            || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
        {
            throw new TaskValidationException($"'url' must be an absolute http or https URL; got '{ForMessage(url)}'.");
        }

        // IdnHost: punycode for international names, IPv6 without brackets, IPv4 in canonical dotted form.
        var host = uri.IdnHost;
        if (!_allowedHosts.Contains(host))
        {
            throw new TaskValidationException(_allowedHosts.Count == 0
                ? $"The host '{host}' is not allowed: no hosts are allowed for 'http-get' (configure HttpGetOptions.AllowedHosts)."
                : $"The host '{host}' is not allowed for 'http-get'; allowed hosts: {string.Join(", ", _allowedHosts.Order(StringComparer.OrdinalIgnoreCase))}.");
        }

        return uri;
    }
}

/// <summary>Configuration of <c>http-get</c> (section <c>Worker:HttpGet</c> in the worker host).</summary>
public sealed class HttpGetOptions : IValidatableObject
{
    /// <summary>The configuration key of <see cref="AllowedNetworks"/>, as errors name it.</summary>
    public const string AllowedNetworksKey = "Worker:HttpGet:AllowedNetworks";

    /// <summary>The configuration key of <see cref="DeniedNetworks"/>, as errors name it.</summary>
    public const string DeniedNetworksKey = "Worker:HttpGet:DeniedNetworks";

    /// <summary>
    /// Host names or IP addresses that may be fetched, matched case-insensitively against the URL's host (any
    /// port). Empty, the default, allows nothing.
    /// </summary>
    public IList<string> AllowedHosts { get; set; } = [];

    /// <summary>The largest response body accepted; a longer body fails the task. Default 16 MiB.</summary>
    public long MaxResponseBytes { get; set; } = 16L * 1024 * 1024;

    /// <summary>
    /// Networks (CIDR, single addresses or groups, see <see cref="HttpGetTargetGuard.Groups"/>) whose addresses
    /// http-get may connect to. Not set, the default: every address that <see cref="DeniedNetworks"/> does not deny.
    /// (Null rather than empty by default: configuration binding appends to an existing list.)
    /// </summary>
    public IList<string>? AllowedNetworks { get; set; }

    /// <summary>
    /// Networks http-get may never connect to, whatever <see cref="AllowedNetworks"/> says. Not set, the default:
    /// <see cref="HttpGetTargetGuard.DefaultDeniedNetworks"/> (link-local, the metadata services, unspecified);
    /// <c>none</c> denies nothing.
    /// </summary>
    public IList<string>? DeniedNetworks { get; set; }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext) =>
        HttpGetTargetGuard.Problems(this).Select(e => new ValidationResult(e, [nameof(AllowedNetworks), nameof(DeniedNetworks)]));
}

/// <summary>Input of <c>http-get</c>: <c>{"url": "http://127.0.0.1:8080/x", "timeoutMs": 10000}</c>.</summary>
public sealed record HttpGetInput
{
    [JsonPropertyName("url")]
    public required string Url { get; init; }

    /// <summary>Per-task timeout in milliseconds; <see cref="HttpGetHandler.DefaultTimeoutMs"/> when absent.</summary>
    [JsonPropertyName("timeoutMs")]
    public long TimeoutMs { get; init; } = HttpGetHandler.DefaultTimeoutMs;
}

/// <summary>Output of <c>http-get</c>.</summary>
public sealed record HttpGetOutput
{
    [JsonPropertyName("status")]
    public required int Status { get; init; }

    [JsonPropertyName("bytes")]
    public required long Bytes { get; init; }

    /// <summary>SHA-256 of the body, 64 lowercase hex digits.</summary>
    [JsonPropertyName("sha256")]
    public required string Sha256 { get; init; }
}
