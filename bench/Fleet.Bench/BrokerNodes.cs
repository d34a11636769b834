using System.Globalization;
using System.Text.RegularExpressions;

namespace Fleet.Bench;

/// <summary>
/// The nodes of a broker connection string, single (<c>amqp://u:p@host:5672/vhost</c>) or multi-node
/// (<c>amqp://u:p@host1:5672,host2:5672,host3:5672/vhost</c>). The bench needs them apart: the raw baseline talks to
/// one node (the first, as a client with that list starts on), and the CPU and memory of every node's process count.
/// </summary>
internal static partial class BrokerNodes
{
    [GeneratedRegex(@"^(?<scheme>[a-z]+://)(?<user>[^@/]*@)?(?<hosts>[^/?#]*)(?<rest>.*)$", RegexOptions.IgnoreCase)]
    private static partial Regex UriParts();

    /// <summary>Each node's host and port (the scheme's default port where none is given).</summary>
    public static IReadOnlyList<(string Host, int Port)> Of(string amqpUri)
    {
        var m = Match(amqpUri);
        var defaultPort = m.Groups["scheme"].Value.StartsWith("amqps", StringComparison.OrdinalIgnoreCase) ? 5671 : 5672;
        return [.. m.Groups["hosts"].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(h =>
        {
            // A bracketed IPv6 literal keeps its colons; the port is after the last ']:' or ':'.
            var colon = h.LastIndexOf(':');
            return colon > h.LastIndexOf(']') && int.TryParse(h[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port)
                ? (h[..colon], port)
                : (h, defaultPort);
        })];
    }

    /// <summary>The same connection string with only its first node: a URI every AMQP client reads.</summary>
    public static string FirstNodeUri(string amqpUri)
    {
        var m = Match(amqpUri);
        var first = m.Groups["hosts"].Value.Split(',', 2)[0].Trim();
        return m.Groups["scheme"].Value + m.Groups["user"].Value + first + m.Groups["rest"].Value;
    }

    private static Match Match(string amqpUri)
    {
        var m = UriParts().Match(amqpUri);
        return m.Success && m.Groups["hosts"].Length > 0
            ? m
            : throw new BenchException("the RabbitMQ connection string must look like amqp://user:pass@host:5672/vhost (or host1:5672,host2:5672,... for a cluster)");
    }
}
