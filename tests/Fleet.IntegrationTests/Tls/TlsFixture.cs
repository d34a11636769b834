using System.Globalization;
using Fleet.IntegrationTests.Support;
using Fleet.Persistence;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using Xunit.Abstractions;

namespace Fleet.IntegrationTests.Tls;

[CollectionDefinition(Name)]
public sealed class TlsCollection : ICollectionFixture<TlsFixture>
{
    public const string Name = "tls";
}

/// <summary>
/// Private PostgreSQL and RabbitMQ servers (infra/local/services.sh) that speak TLS with a certificate of a throwaway
/// test CA made here with openssl: PostgreSQL on its usual port (ssl = on), RabbitMQ on a TLS listener of its own
/// beside the plain one. The server certificate names only 127.0.0.1, so dialling <c>localhost</c> is a host-name
/// mismatch; a second CA, which signed nothing the servers present, stands for "untrusted".
/// </summary>
public sealed class TlsFixture : IAsyncLifetime
{
    public const string DatabaseName = "fleet_tls";

    private readonly DirectoryInfo _certificates = Directory.CreateTempSubdirectory("fleet-tls-certs-");
    private readonly int _amqpTlsPort = ProcessTools.GetFreeLoopbackPort();
    private readonly int _managementTlsPort = ProcessTools.GetFreeLoopbackPort();
    private readonly FleetServersFixture _servers;

    public TlsFixture(IMessageSink sink)
    {
        _servers = new FleetServersFixture(sink, new Dictionary<string, string>
        {
            ["FLEET_TLS_CERT_FILE"] = Path.Combine(_certificates.FullName, "server.pem"),
            ["FLEET_TLS_KEY_FILE"] = Path.Combine(_certificates.FullName, "server.key"),
            ["FLEET_AMQP_TLS_PORT"] = _amqpTlsPort.ToString(CultureInfo.InvariantCulture),
            ["FLEET_AMQP_MGMT_TLS_PORT"] = _managementTlsPort.ToString(CultureInfo.InvariantCulture),
        });
    }

    /// <summary>The CA that signed the servers' certificate (PEM).</summary>
    public string CaFile => Path.Combine(_certificates.FullName, "ca.pem");

    /// <summary>A CA that signed nothing the servers present (PEM).</summary>
    public string OtherCaFile => Path.Combine(_certificates.FullName, "other-ca.pem");

    public int AmqpTlsPort => _amqpTlsPort;

    public FleetServersFixture Servers => _servers;

    /// <summary>The test database over plain TCP on loopback (no TLS settings at all).</summary>
    public string PlainPostgres => new NpgsqlConnectionStringBuilder(_servers.PostgresConnectionString) { Database = DatabaseName }.ConnectionString;

    /// <summary>The test database with <c>SSL Mode=VerifyFull</c> against <paramref name="rootCertificate"/>.</summary>
    public string VerifiedPostgres(string rootCertificate, string host = "127.0.0.1") =>
        new NpgsqlConnectionStringBuilder(PlainPostgres) { Host = host, SslMode = SslMode.VerifyFull, RootCertificate = rootCertificate }.ConnectionString;

    /// <summary>amqps:// to the TLS listener, dialled as <paramref name="host"/>.</summary>
    public string Amqps(string host = "127.0.0.1") =>
        new UriBuilder(_servers.RabbitMqUri) { Scheme = "amqps", Host = host, Port = _amqpTlsPort }.Uri.ToString();

    /// <summary>https:// to the management API's TLS listener, with the broker user's credentials.</summary>
    public Uri ManagementHttps => new UriBuilder(_servers.RabbitMqManagementUri!) { Scheme = "https", Port = _managementTlsPort }.Uri;

    public int ManagementTlsPort => _managementTlsPort;

    /// <summary>The plain AMQP listener.</summary>
    public string Amqp => _servers.RabbitMqUri.ToString();

    /// <summary>A worker's settings against the given database and broker, with <paramref name="extra"/> on top.</summary>
    public static Dictionary<string, string?> WorkerSettings(string hostName, string postgres, string rabbitMq, IDictionary<string, string?>? extra = null)
    {
        var settings = new Dictionary<string, string?>
        {
            ["ConnectionStrings:fleetdb"] = postgres,
            ["ConnectionStrings:rabbitmq"] = rabbitMq,
            ["Worker:HostName"] = hostName,
            ["Worker:CpuConcurrency"] = "1",
            ["Worker:IoConcurrency"] = "8",
            ["Worker:DrainSeconds"] = "2",
            ["Worker:ReconcileIntervalSeconds"] = "0",
            ["Logging:LogLevel:Default"] = "Warning",
        };
        foreach (var (key, value) in extra ?? new Dictionary<string, string?>())
        {
            settings[key] = value;
        }

        return settings;
    }

    public async Task InitializeAsync()
    {
        await MakeCertificatesAsync();
        await _servers.InitializeAsync();
        await using (var admin = NpgsqlDataSource.Create(_servers.PostgresConnectionString))
        {
            await using var create = admin.CreateCommand($"CREATE DATABASE {DatabaseName}");
            await create.ExecuteNonQueryAsync();
        }

        await using var dataSource = NpgsqlDataSource.Create(PlainPostgres);
        var options = new DbContextOptionsBuilder<FleetDbContext>();
        options.UseFleetNpgsql(dataSource);
        await using var db = new FleetDbContext(options.Options);
        await db.Database.MigrateAsync();
    }

    public async Task DisposeAsync()
    {
        await _servers.DisposeAsync();
        _certificates.Delete(recursive: true);
    }

    /// <summary>Two CAs and a server certificate of the first for IP 127.0.0.1, EC P-256, valid two days.</summary>
    private async Task MakeCertificatesAsync()
    {
        var dir = _certificates.FullName;
        await File.WriteAllTextAsync(Path.Combine(dir, "server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n");
        string[][] commands =
        [
            ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Fleet TLS test CA"],
            ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "other-ca.key", "-out", "other-ca.pem", "-days", "2", "-subj", "/CN=Some other CA"],
            ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=fleet-tls-test-server"],
            ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext"],
        ];
        foreach (var arguments in commands)
        {
            await ProcessTools.RunCheckedAsync("/usr/bin/openssl", arguments, TimeSpan.FromSeconds(30), workingDirectory: dir);
        }
    }
}
