using System.ComponentModel.DataAnnotations;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Npgsql;

namespace Fleet.Client.Tls;

/// <summary>
/// The <c>Tls</c> section, shared by every Fleet process (worker, API, CLI, <see cref="FleetClient"/>): how server
/// certificates are checked. By default every TLS connection verifies the certificate chain against the system trust
/// store and the host name, and a database connection that leaves the machine must either verify its server
/// (<c>SSL Mode=VerifyFull</c>) or say it runs without TLS (<c>SSL Mode=Disable</c>). The two opt-outs exist for
/// networks the operator vouches for; each one is logged as a warning at start.
/// <code>
/// "Tls": { "RabbitMqCaFile": "/etc/fleet/tls/ca.pem", "RabbitMqAllowUntrusted": false, "PostgresAllowUnverified": false }
/// </code>
/// </summary>
public sealed class FleetTlsOptions : IValidatableObject
{
    public const string SectionName = "Tls";

    /// <summary>
    /// PEM file with the CA certificates of a private CA. When set, the broker's certificate (AMQP over TLS and the
    /// management API over HTTPS) must chain to one of them, instead of to the system trust store.
    /// </summary>
    public string? RabbitMqCaFile { get; set; }

    /// <summary>Accept any broker certificate: chain, host name and dates unchecked. For tests and closed networks only.</summary>
    public bool RabbitMqAllowUntrusted { get; set; }

    /// <summary>
    /// Allow a database connection to a host other than this machine with an <c>SSL Mode</c> that does not verify the
    /// server (<c>Prefer</c>, the default, <c>Allow</c>, <c>Require</c> or <c>VerifyCA</c>).
    /// </summary>
    public bool PostgresAllowUnverified { get; set; }

    /// <summary>How broker certificates are checked under these settings (the CA file is read at the first check).</summary>
    public ServerCertificateValidator CreateRabbitMqValidator() =>
        RabbitMqAllowUntrusted ? ServerCertificateValidator.AcceptAny
        : string.IsNullOrWhiteSpace(RabbitMqCaFile) ? ServerCertificateValidator.SystemTrust
        : new ServerCertificateValidator(RabbitMqCaFile, $"Tls:RabbitMqCaFile ({RabbitMqCaFile})");

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (string.IsNullOrWhiteSpace(RabbitMqCaFile))
        {
            yield break;
        }

        if (RabbitMqAllowUntrusted)
        {
            yield return new ValidationResult(
                "Tls:RabbitMqCaFile and Tls:RabbitMqAllowUntrusted contradict each other: a CA to check against, and no check. Set one.",
                [nameof(RabbitMqCaFile), nameof(RabbitMqAllowUntrusted)]);
        }

        if (CaFileProblem(RabbitMqCaFile) is { } problem)
        {
            yield return new ValidationResult($"Tls:RabbitMqCaFile '{RabbitMqCaFile}' {problem}.", [nameof(RabbitMqCaFile)]);
        }
    }

    /// <summary>
    /// Why a database connection string must not be used under these settings, or null. A connection to this machine
    /// (loopback address, <c>localhost</c>, Unix socket) needs nothing; any other host needs <c>SSL Mode=VerifyFull</c>
    /// (TLS, chain and host name checked) or <c>SSL Mode=Disable</c> (plain, said so explicitly, like <c>amqp://</c>).
    /// The modes in between look like TLS but accept any certificate (<c>VerifyCA</c>: any of the CA's, for any host),
    /// so whoever sits on the path can read and change every payload and result; Npgsql's default, <c>Prefer</c>, is
    /// one of them. <see cref="PostgresAllowUnverified"/> lets them through.
    /// </summary>
    public string? PostgresProblem(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        if (PostgresAllowUnverified || builder.SslMode is SslMode.VerifyFull or SslMode.Disable || AllLocal(builder.Host))
        {
            return null;
        }

        return $"ConnectionStrings:fleetdb connects to '{builder.Host}' with SSL Mode={builder.SslMode}, which does not verify the server's " +
            "certificate (anyone on the network path could read and change the data). Use SSL Mode=VerifyFull (with Root Certificate=CA.pem " +
            "for a private CA), or SSL Mode=Disable on a network you trust, or set Tls:PostgresAllowUnverified=true.";
    }

    /// <summary>True when the connection string would be refused without <see cref="PostgresAllowUnverified"/> (to warn that it is on).</summary>
    public static bool IsUnverifiedPostgres(string connectionString) =>
        new FleetTlsOptions().PostgresProblem(connectionString) is not null;

    private static bool AllLocal(string? hosts) =>
        string.IsNullOrWhiteSpace(hosts) || hosts.Split(',').All(host => IsLocal(host.Trim()));

    private static bool IsLocal(string host)
    {
        if (host.StartsWith('/') || host.StartsWith('@'))
        {
            return true; // a Unix socket directory (or an abstract socket)
        }

        // host, host:port, [v6]:port, v6 without a port
        var name = host.StartsWith('[') ? host[1..host.IndexOf(']', StringComparison.Ordinal)]
            : host.Count(c => c == ':') == 1 ? host[..host.IndexOf(':', StringComparison.Ordinal)]
            : host;
        return name.Equals("localhost", StringComparison.OrdinalIgnoreCase) || (IPAddress.TryParse(name, out var address) && IPAddress.IsLoopback(address));
    }

    private static string? CaFileProblem(string path)
    {
        try
        {
            return ServerCertificateValidator.LoadPem(path).Count == 0 ? "holds no PEM certificate (-----BEGIN CERTIFICATE-----)" : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException)
        {
            return $"cannot be read: {ex.Message}";
        }
    }
}
