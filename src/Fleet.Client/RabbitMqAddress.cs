namespace Fleet.Client;

/// <summary>
/// Reads the pinned <c>ConnectionStrings__rabbitmq</c> form, <c>amqp[s]://user:pass@host:port/vhost</c>, for every
/// RabbitMQ connection Fleet opens. Parsed here rather than left to a client library so that the user name,
/// password and vhost are decoded the way the RabbitMQ URI spec says (percent-encoding, "/" vhost as "%2F").
/// Two query parameters of that spec tune how fast a dead peer is noticed: <c>heartbeat</c> (seconds) and
/// <c>connection_timeout</c> (milliseconds), e.g. <c>amqp://fleet:x@mq:5672/fleet?heartbeat=5</c>.
/// </summary>
public sealed record RabbitMqAddress(string Host, int Port, string VirtualHost, string UserName, string Password, bool UseTls)
{
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

    /// <summary>How this server is named in a certificate error.</summary>
    public string ServerDescription => $"RabbitMQ at {Host}:{Port}";

    public static readonly TimeSpan DefaultHeartbeat = TimeSpan.FromSeconds(10);

    public static readonly TimeSpan DefaultConnectionTimeout = TimeSpan.FromSeconds(10);

    public static RabbitMqAddress Parse(string amqpUri)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(amqpUri);
        if (!Uri.TryCreate(amqpUri, UriKind.Absolute, out var uri) || uri.Scheme is not ("amqp" or "amqps" or "rabbitmq"))
        {
            throw new FormatException("The RabbitMQ connection string must look like amqp://user:pass@host:5672/vhost.");
        }

        var tls = uri.Scheme == "amqps";
        var userInfo = uri.UserInfo.Split(':', 2);
        var user = userInfo[0].Length > 0 ? Uri.UnescapeDataString(userInfo[0]) : "guest";
        var password = userInfo.Length > 1 ? Uri.UnescapeDataString(userInfo[1]) : "guest";
        var path = uri.AbsolutePath.TrimStart('/');
        var vhost = path.Length == 0 ? "/" : Uri.UnescapeDataString(path);
        var port = uri.IsDefaultPort || uri.Port <= 0 ? (tls ? 5671 : 5672) : uri.Port;
        var address = new RabbitMqAddress(uri.Host, port, vhost, user, password, tls);
        foreach (var (key, value) in QueryParameters(uri.Query))
        {
            address = key switch
            {
                // 0 would switch heartbeats off: a cut-off worker would then hold its tasks until TCP gives up (minutes to hours).
                "heartbeat" => address with { Heartbeat = TimeSpan.FromSeconds(Number(key, value, 1, 600)) },
                "connection_timeout" => address with { ConnectionTimeout = TimeSpan.FromMilliseconds(Number(key, value, 100, 300_000)) },
                _ => throw new FormatException(
                    $"Unknown parameter '{key}' in the RabbitMQ connection string; Fleet reads 'heartbeat' (seconds) and 'connection_timeout' (milliseconds)."),
            };
        }

        return address;
    }

    /// <summary>
    /// A RabbitMQ.Client connection factory for this address, with the liveness settings every Fleet connection
    /// shares (the hosts' MassTransit bus uses the same): the address's heartbeat and connection timeout, so a
    /// cut-off peer is noticed within two missed heartbeats, not the TCP timeout. With TLS the certificate is checked by
    /// <see cref="Certificates"/>.
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
        Ssl = new RabbitMQ.Client.SslOption { Enabled = UseTls, ServerName = Host, CertificateValidationCallback = Certificates.For(ServerDescription) },
    };

    private static IEnumerable<(string Key, string Value)> QueryParameters(string query)
    {
        foreach (var pair in query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = pair.Split('=', 2);
            yield return (Uri.UnescapeDataString(parts[0]), parts.Length > 1 ? Uri.UnescapeDataString(parts[1]) : "");
        }
    }

    private static int Number(string key, string value, int min, int max) =>
        int.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var number) && number >= min && number <= max
            ? number
            : throw new FormatException($"The RabbitMQ connection string's '{key}' must be a whole number from {min} to {max}, not '{value}'.");

    /// <summary>The address without the password, for logs.</summary>
    public override string ToString() => $"{(UseTls ? "amqps" : "amqp")}://{UserName}:***@{Host}:{Port}/{Uri.EscapeDataString(VirtualHost)}";
}
