using System.Collections.Frozen;
using System.Net;
using System.Net.Http;
using System.Net.Sockets;

namespace Fleet.Tasks.BuiltIn;

/// <summary>
/// Which IP addresses <c>http-get</c> may connect to: <see cref="HttpGetOptions.AllowedNetworks"/> and
/// <see cref="HttpGetOptions.DeniedNetworks"/>. It checks the address a connection is actually opened to (the
/// <see cref="SocketsHttpHandler.ConnectCallback"/> resolves the name, filters the addresses and connects to a
/// checked one), so a name that resolves to another address at connect time than before (DNS rebinding) is caught.
/// Deny wins: an address in a denied network is refused even when an allowed network also contains it, so that a
/// deny entry (the cloud metadata addresses, say) is a promise no broad allow entry breaks by accident.
/// </summary>
public sealed class HttpGetTargetGuard
{
    /// <summary>The error type of a task whose target address the guard refused; such a task is not retried.</summary>
    public const string ErrorType = "HttpGetTargetDenied";

    /// <summary>The denied networks when <see cref="HttpGetOptions.DeniedNetworks"/> is not set.</summary>
    public static readonly IReadOnlyList<string> DefaultDeniedNetworks = ["link-local", "metadata", "unspecified"];

    /// <summary>Named groups an entry may use instead of a CIDR network.</summary>
    public static readonly FrozenDictionary<string, IPNetwork[]> Groups = new Dictionary<string, IPNetwork[]>(StringComparer.OrdinalIgnoreCase)
    {
        ["loopback"] = [IPNetwork.Parse("127.0.0.0/8"), IPNetwork.Parse("::1/128")],
        ["private"] = [IPNetwork.Parse("10.0.0.0/8"), IPNetwork.Parse("172.16.0.0/12"), IPNetwork.Parse("192.168.0.0/16"), IPNetwork.Parse("fc00::/7")],
        ["link-local"] = [IPNetwork.Parse("169.254.0.0/16"), IPNetwork.Parse("fe80::/10")],

        // The instance metadata services: 169.254.169.254 (AWS, GCP, Azure, ...), AWS's IPv6 one and Alibaba's.
        ["metadata"] = [IPNetwork.Parse("169.254.169.254/32"), IPNetwork.Parse("fd00:ec2::254/128"), IPNetwork.Parse("100.100.100.200/32")],

        // 0.0.0.0 and :: reach the local host on Linux.
        ["unspecified"] = [IPNetwork.Parse("0.0.0.0/8"), IPNetwork.Parse("::/128")],
        ["shared"] = [IPNetwork.Parse("100.64.0.0/10")],
        ["multicast"] = [IPNetwork.Parse("224.0.0.0/4"), IPNetwork.Parse("ff00::/8")],
        ["any"] = [IPNetwork.Parse("0.0.0.0/0"), IPNetwork.Parse("::/0")],
        ["none"] = [],
    }.ToFrozenDictionary(StringComparer.OrdinalIgnoreCase);

    private readonly (string Entry, IPNetwork Network)[] _allowed;
    private readonly (string Entry, IPNetwork Network)[] _denied;

    private HttpGetTargetGuard((string, IPNetwork)[] allowed, (string, IPNetwork)[] denied)
    {
        _allowed = allowed;
        _denied = denied;
    }

    /// <summary>The guard of <paramref name="options"/>; throws when an entry is neither a network nor a group.</summary>
    public static HttpGetTargetGuard Create(HttpGetOptions options)
    {
        var (allowed, denied, errors) = Read(options);
        return errors.Count == 0 ? new HttpGetTargetGuard(allowed, denied) : throw new ArgumentException(string.Join(" ", errors), nameof(options));
    }

    /// <summary>What is wrong with the two lists of <paramref name="options"/>, each naming its setting (for validation at start).</summary>
    internal static IReadOnlyList<string> Problems(HttpGetOptions options) => Read(options).Errors;

    private static ((string, IPNetwork)[] Allowed, (string, IPNetwork)[] Denied, List<string> Errors) Read(HttpGetOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var allowed = Parse(options.AllowedNetworks ?? [], out var allowedErrors);
        var denied = Parse((IEnumerable<string>?)options.DeniedNetworks ?? DefaultDeniedNetworks, out var deniedErrors);
        var errors = allowedErrors.Select(e => $"{HttpGetOptions.AllowedNetworksKey}: {e}")
            .Concat(deniedErrors.Select(e => $"{HttpGetOptions.DeniedNetworksKey}: {e}"))
            .ToList();
        return (allowed, denied, errors);
    }

    /// <summary>
    /// The entries of a list: CIDR networks (<c>10.0.0.0/8</c>, <c>fe80::/10</c>), single addresses, or group names;
    /// an element may hold several, separated by commas, so that one environment variable can set a whole list.
    /// </summary>
    internal static (string Entry, IPNetwork Network)[] Parse(IEnumerable<string> entries, out List<string> errors)
    {
        errors = [];
        var networks = new List<(string, IPNetwork)>();
        foreach (var entry in entries.SelectMany(static e => (e ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)))
        {
            if (Groups.TryGetValue(entry, out var group))
            {
                networks.AddRange(group.Select(n => (entry.ToLowerInvariant(), n)));
            }
            else if (entry.Split('/') is [var baseText, _] && IPNetwork.TryParse(entry, out var network) && IPAddress.Parse(baseText).Equals(network.BaseAddress))
            {
                // Bits past the prefix (10.1.2.3/8) are refused rather than cleared: 10.0.0.0/8 or 10.1.2.3/32 was meant.
                networks.Add((entry, Normalize(network)));
            }
            else if (IPAddress.TryParse(entry, out var address))
            {
                var single = Normalize(address);
                networks.Add((entry, new IPNetwork(single, single.AddressFamily == AddressFamily.InterNetwork ? 32 : 128)));
            }
            else
            {
                errors.Add($"'{entry}' is neither a network in CIDR form (with no bits set past its prefix) nor a group ({string.Join(", ", Groups.Keys.Order(StringComparer.Ordinal))}).");
            }
        }

        return [.. networks];
    }

    /// <summary>Why <paramref name="address"/> may not be connected to, naming the setting; null when it may.</summary>
    public string? Refusal(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        address = Normalize(address);
        foreach (var (entry, network) in _denied)
        {
            if (network.Contains(address))
            {
                return $"{address} (in '{entry}', listed in {HttpGetOptions.DeniedNetworksKey})";
            }
        }

        return _allowed.Length == 0 || _allowed.Any(a => a.Network.Contains(address))
            ? null
            : $"{address} (in none of the networks of {HttpGetOptions.AllowedNetworksKey})";
    }

    /// <summary>
    /// The <see cref="SocketsHttpHandler.ConnectCallback"/>: resolves the host, keeps the addresses the guard
    /// permits, and connects to the first that answers. When it permits none it throws
    /// <see cref="HttpGetTargetDeniedException"/> without opening any connection.
    /// </summary>
    public async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        var host = context.DnsEndPoint.Host;
        var addresses = IPAddress.TryParse(host, out var literal)
            ? [literal]
            : await Dns.GetHostAddressesAsync(host, cancellationToken).ConfigureAwait(false);
        var refusals = new List<string>();
        SocketException? lastError = null;
        foreach (var address in addresses.Select(Normalize).Distinct())
        {
            if (Refusal(address) is { } refusal)
            {
                refusals.Add(refusal);
                continue;
            }

            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(new IPEndPoint(address, context.DnsEndPoint.Port), cancellationToken).ConfigureAwait(false);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch (SocketException ex)
            {
                socket.Dispose();
                lastError = ex;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }

        if (lastError is not null)
        {
            throw lastError;
        }

        var what = literal is null ? $"'{host}' resolves only to addresses http-get may not connect to: " : "http-get may not connect to ";
        throw new HttpGetTargetDeniedException($"{what}{string.Join("; ", refusals)}.");
    }

    /// <summary>An IPv4-mapped IPv6 address (<c>::ffff:10.0.0.1</c>) is checked as the IPv4 address it carries.</summary>
    internal static IPAddress Normalize(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;

    private static IPNetwork Normalize(IPNetwork network) =>
        network.BaseAddress.IsIPv4MappedToIPv6 && network.PrefixLength >= 96
            ? new IPNetwork(network.BaseAddress.MapToIPv4(), network.PrefixLength - 96)
            : network;
}

/// <summary>
/// <c>http-get</c>'s guard refused every address of the target (<see cref="HttpGetTargetGuard"/>). The handler turns
/// it into a <see cref="TaskRefusedException"/>: the task ends failed, not retried.
/// </summary>
public sealed class HttpGetTargetDeniedException : Exception
{
    public HttpGetTargetDeniedException(string message)
        : base(message)
    {
    }

    public HttpGetTargetDeniedException()
    {
    }

    public HttpGetTargetDeniedException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
