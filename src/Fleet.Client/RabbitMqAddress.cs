namespace Fleet.Client;

/// <summary>
/// Reads the pinned <c>ConnectionStrings__rabbitmq</c> form, <c>amqp[s]://user:pass@host:port/vhost</c>, for every
/// RabbitMQ connection Fleet opens. Parsed here rather than left to a client library so that the user name,
/// password and vhost are decoded the way the RabbitMQ URI spec says (percent-encoding, "/" vhost as "%2F").
/// Two query parameters of that spec tune how fast a dead peer is noticed: <c>heartbeat</c> (seconds) and
/// <c>connection_timeout</c> (milliseconds), e.g. <c>amqp://fleet:x@mq:5672/fleet?heartbeat=5</c>.
/// A cluster is several comma-separated nodes with one user and vhost,
/// <c>amqp://fleet:x@mq-0:5672,mq-1:5672,mq-2/fleet</c> (see <see cref="Nodes"/>); <see cref="Host"/> and
/// <see cref="Port"/> are the first of them.
/// </summary>
public sealed record RabbitMqAddress(string Host, int Port, string VirtualHost, string UserName, string Password, bool UseTls)
{
    private readonly IReadOnlyList<RabbitMqNode>? _nodes;

    /// <summary>
    /// The heartbeat timeout requested from the broker (it uses the smaller of its own and this one). The client
    /// and the broker each close a connection that has been silent for about two of them, and only then does the
    /// broker hand the dead connection's unacknowledged messages to other consumers.
    /// </summary>
    public TimeSpan Heartbeat { get; init; } = DefaultHeartbeat;

    /// <summary>How long opening a TCP connection and the AMQP handshake may take before a try counts as failed.</summary>
    public TimeSpan ConnectionTimeout { get; init; } = DefaultConnectionTimeout;

    /// <summary>
    /// How the broker's certificate is checked when <see cref="UseTls"/>: by default chain (system trust store) and
    /// host name; the <c>Tls</c> settings (<see cref="Tls.FleetTlsOptions"/>) choose a private CA or no check.
    /// </summary>
    public Tls.ServerCertificateValidator Certificates { get; init; } = Tls.ServerCertificateValidator.SystemTrust;

    /// <summary>
    /// The type of the queues Fleet declares on this broker (<c>RabbitMq:QueueType</c>, see <see cref="QueueTopology"/>):
    /// a property of the deployment's broker, so it travels with its address to every component that declares.
    /// </summary>
    public BrokerQueueType QueueType { get; init; } = QueueTopology.DefaultQueueType;

    /// <summary>
    /// Every broker node of the address, in the order written; a connection goes to one of them and moves to another
    /// when its node goes away. One node (<see cref="Host"/>:<see cref="Port"/>) unless the address lists several.
    /// </summary>
    public IReadOnlyList<RabbitMqNode> Nodes
    {
        get => _nodes ?? [new RabbitMqNode(Host, Port)];
        init => _nodes = value is { Count: > 0 } ? [.. value] : throw new ArgumentException("A RabbitMQ address needs at least one node.", nameof(value));
    }

    /// <summary>How this broker is named in a log line or an error: every node, e.g. <c>RabbitMQ at mq-0:5672, mq-1:5672</c>.</summary>
    public string ServerDescription => $"RabbitMQ at {string.Join(", ", Nodes)}";

    public static readonly TimeSpan DefaultHeartbeat = TimeSpan.FromSeconds(10);

    public static readonly TimeSpan DefaultConnectionTimeout = TimeSpan.FromSeconds(10);

    /// <summary>How a parse error names the value when the caller does not say which setting it came from.</summary>
    public const string DefaultSettingName = "The RabbitMQ connection string";

    private static readonly System.Text.RegularExpressions.Regex Shape = new(
        @"^(?<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?:(?<user>[^@/?#]*)@)?(?<hosts>[^/?#]*)(?<rest>[/?#].*)?$",
        System.Text.RegularExpressions.RegexOptions.CultureInvariant | System.Text.RegularExpressions.RegexOptions.Singleline);

    /// <param name="amqpUri">The address, one node or several comma-separated ones.</param>
    /// <param name="setting">The setting the value came from, named in a <see cref="FormatException"/> (e.g. <c>ConnectionStrings:rabbitmq</c>).</param>
    public static RabbitMqAddress Parse(string amqpUri, string setting = DefaultSettingName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(amqpUri);
        ArgumentException.ThrowIfNullOrWhiteSpace(setting);

        // System.Uri refuses a comma-separated host list in the authority: the hosts are split off first and the rest
        // (user info, vhost, query) is read by Uri with one placeholder host, so it is decoded exactly as for one node.
        var shape = Shape.Match(amqpUri.Trim());
        var scheme = shape.Success ? shape.Groups["scheme"].Value.ToLowerInvariant() : "";
        if (scheme is not ("amqp" or "amqps" or "rabbitmq"))
        {
            throw new FormatException($"{setting} must look like amqp://user:pass@host:5672/vhost (or host1:5672,host2:5672,host3:5672 for a cluster).");
        }

        var tls = scheme == "amqps";
        var nodes = ParseNodes(shape.Groups["hosts"].Value, tls ? 5671 : 5672, setting);
        var userPart = shape.Groups["user"].Success ? shape.Groups["user"].Value + "@" : "";
        if (!Uri.TryCreate($"{scheme}://{userPart}node{shape.Groups["rest"].Value}", UriKind.Absolute, out var uri))
        {
            throw new FormatException($"{setting}: its user, vhost or query cannot be read; the form is amqp://user:pass@host:5672/vhost?heartbeat=10.");
        }

        var userInfo = uri.UserInfo.Split(':', 2);
        var user = userInfo[0].Length > 0 ? Uri.UnescapeDataString(userInfo[0]) : "guest";
        var password = userInfo.Length > 1 ? Uri.UnescapeDataString(userInfo[1]) : "guest";
        var path = uri.AbsolutePath.TrimStart('/');
        var vhost = path.Length == 0 ? "/" : Uri.UnescapeDataString(path);
        var address = new RabbitMqAddress(nodes[0].Host, nodes[0].Port, vhost, user, password, tls) { Nodes = nodes };
        foreach (var (key, value) in QueryParameters(uri.Query))
        {
            address = key switch
            {
                // 0 would switch heartbeats off: a cut-off worker would then hold its tasks until TCP gives up (minutes to hours).
                "heartbeat" => address with { Heartbeat = TimeSpan.FromSeconds(Number(setting, key, value, 1, 600)) },
                "connection_timeout" => address with { ConnectionTimeout = TimeSpan.FromMilliseconds(Number(setting, key, value, 100, 300_000)) },
                _ => throw new FormatException(
                    $"Unknown parameter '{key}' in {setting}; Fleet reads 'heartbeat' (seconds) and 'connection_timeout' (milliseconds)."),
            };
        }

        return address;
    }

    /// <summary>
    /// The nodes in the order a connection named <paramref name="connectionName"/> tries them: the written order turned
    /// to start at a node chosen by the name, so that the processes of a fleet (their names carry host and process id)
    /// spread over the cluster rather than all landing on the first node, and one process keeps its order across restarts of its bus.
    /// </summary>
    public IReadOnlyList<RabbitMqNode> NodesInOrderFor(string connectionName)
    {
        ArgumentNullException.ThrowIfNull(connectionName);
        var nodes = Nodes;
        var start = (int)(StableHash(connectionName) % (uint)nodes.Count);
        return [.. nodes.Skip(start), .. nodes.Take(start)];
    }

    /// <summary>
    /// A RabbitMQ.Client connection factory for this address, with the liveness settings every Fleet connection
    /// shares (the hosts' MassTransit bus uses the same): the address's heartbeat and connection timeout, so a
    /// cut-off peer is noticed within two missed heartbeats, not the TCP timeout. With TLS the certificate is checked by
    /// <see cref="Certificates"/>. Its own host is the first node; <see cref="ConnectAsync"/> uses every node.
    /// </summary>
    public RabbitMQ.Client.ConnectionFactory CreateConnectionFactory(string connectionName) => new()
    {
        HostName = Host,
        Port = Port,
        VirtualHost = VirtualHost,
        UserName = UserName,
        Password = Password,
        ClientProvidedName = connectionName,
        RequestedHeartbeat = Heartbeat,
        RequestedConnectionTimeout = ConnectionTimeout,

        // Every caller drops a closed connection and opens a new one (through ConnectAsync, so possibly on another
        // node), as MassTransit does for the bus: one way back after a loss, not the client's recovery racing the caller's.
        AutomaticRecoveryEnabled = false,
        TopologyRecoveryEnabled = false,
        Ssl = SslFor(Nodes[0]),
    };

    /// <summary>
    /// One endpoint per node, each with its own TLS settings: the server name sent and checked is that node's host,
    /// and a refused certificate names that node.
    /// </summary>
    public IReadOnlyList<RabbitMQ.Client.AmqpTcpEndpoint> CreateEndpoints() =>
        [.. Nodes.Select(node => new RabbitMQ.Client.AmqpTcpEndpoint(node.Host, node.Port, SslFor(node)))];

    /// <summary>
    /// Opens a connection to one of the <see cref="Nodes"/>; a node that refuses or does not answer within
    /// <see cref="ConnectionTimeout"/> is passed over for the next. RabbitMQ.Client (7.2) tries the endpoints in a
    /// random order (its DefaultEndpointResolver shuffles them on every connect), which spreads Fleet's own
    /// connections over the cluster and lets a reconnect after a node loss start anywhere. When every node fails it
    /// throws <see cref="RabbitMQ.Client.Exceptions.BrokerUnreachableException"/> holding one error per node.
    /// </summary>
    public Task<RabbitMQ.Client.IConnection> ConnectAsync(string connectionName, CancellationToken cancellationToken) =>
        CreateConnectionFactory(connectionName).CreateConnectionAsync(CreateEndpoints(), connectionName, cancellationToken);

    private RabbitMQ.Client.SslOption SslFor(RabbitMqNode node) => new()
    {
        Enabled = UseTls,
        ServerName = node.Host,
        CertificateValidationCallback = Certificates.For(node.ServerDescription),
    };

    private static List<RabbitMqNode> ParseNodes(string hosts, int defaultPort, string setting)
    {
        var nodes = new List<RabbitMqNode>();
        foreach (var entry in hosts.Split(','))
        {
            var node = ParseNode(entry.Trim(), defaultPort, setting);
            if (nodes.Contains(node))
            {
                throw new FormatException($"{setting} lists the node {node} twice; list each node of the cluster once.");
            }

            nodes.Add(node);
        }

        return nodes;
    }

    private static RabbitMqNode ParseNode(string entry, int defaultPort, string setting)
    {
        if (entry.Length == 0)
        {
            throw new FormatException($"{setting} has an empty host in its node list; the form is amqp://user:pass@host1:5672,host2:5672/vhost.");
        }

        string host;
        string? port = null;
        if (entry.StartsWith('['))
        {
            // An IPv6 literal: [::1] or [::1]:5672.
            var close = entry.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || (close + 1 < entry.Length && entry[close + 1] != ':'))
            {
                throw new FormatException($"{setting}: '{entry}' is not a node; write an IPv6 address as [address]:port.");
            }

            host = entry[1..close];
            port = close + 1 < entry.Length ? entry[(close + 2)..] : null;
        }
        else
        {
            var colon = entry.IndexOf(':', StringComparison.Ordinal);
            if (colon >= 0 && entry.IndexOf(':', colon + 1) >= 0)
            {
                throw new FormatException($"{setting}: '{entry}' is not a node; write an IPv6 address in brackets, [address]:port.");
            }

            host = colon < 0 ? entry : entry[..colon];
            port = colon < 0 ? null : entry[(colon + 1)..];
        }

        var kind = Uri.CheckHostName(host);
        if (kind == UriHostNameType.Unknown || (entry.StartsWith('[') && kind != UriHostNameType.IPv6))
        {
            throw new FormatException($"{setting}: '{host}' in '{entry}' is not a host name or IP address.");
        }

        return new RabbitMqNode(host, port is null ? defaultPort : Number(setting, $"port of {host}", port, 1, 65535));
    }

    // FNV-1a: string.GetHashCode differs between processes, and the order must be the same for the same name.
    private static uint StableHash(string text)
    {
        var hash = 2166136261;
        foreach (var c in text)
        {
            hash = (hash ^ c) * 16777619;
        }

        return hash;
    }

    private static IEnumerable<(string Key, string Value)> QueryParameters(string query)
    {
        foreach (var pair in query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = pair.Split('=', 2);
            yield return (Uri.UnescapeDataString(parts[0]), parts.Length > 1 ? Uri.UnescapeDataString(parts[1]) : "");
        }
    }

    private static int Number(string setting, string key, string value, int min, int max) =>
        int.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var number) && number >= min && number <= max
            ? number
            : throw new FormatException($"{setting}: '{key}' must be a whole number from {min} to {max}, not '{value}'.");

    /// <summary>The address without the password, for logs: every node.</summary>
    public override string ToString() => $"{(UseTls ? "amqps" : "amqp")}://{UserName}:***@{string.Join(",", Nodes)}/{Uri.EscapeDataString(VirtualHost)}";
}

/// <summary>One broker node of a <see cref="RabbitMqAddress"/>: a host name or IP address (IPv6 without brackets) and a port.</summary>
public sealed record RabbitMqNode(string Host, int Port)
{
    /// <summary>How this node is named in a certificate error or a log line.</summary>
    public string ServerDescription => $"RabbitMQ at {this}";

    /// <summary><c>host:port</c>, an IPv6 address in brackets.</summary>
    public override string ToString() => Host.Contains(':', StringComparison.Ordinal) ? $"[{Host}]:{Port}" : $"{Host}:{Port}";
}
