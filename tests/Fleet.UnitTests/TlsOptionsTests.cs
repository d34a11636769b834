using System.ComponentModel.DataAnnotations;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Fleet.Client;
using Fleet.Client.Tls;
using Fleet.Messaging;
using Fleet.Worker;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Fleet.UnitTests;

/// <summary>The Tls section: its validation at start, the database rule, and the certificate check's verdicts.</summary>
public sealed class TlsOptionsTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fleet-tls-unit-");

    public void Dispose() => _dir.Delete(recursive: true);

    [Theory]
    [InlineData("Host=127.0.0.1;Database=fleet")]
    [InlineData("Host=localhost;Database=fleet;SSL Mode=Require")]
    [InlineData("Host=::1;Database=fleet")]
    [InlineData("Host=/var/run/postgresql;Database=fleet")]
    [InlineData("Host=127.0.0.1:5432,localhost;Database=fleet")]
    [InlineData("Host=db.internal;Database=fleet;SSL Mode=VerifyFull")]
    [InlineData("Host=db.internal;Database=fleet;SSL Mode=Disable")]
    public void ADatabaseConnection_ThatIsLocalVerifiedOrExplicitlyPlain_IsAllowed(string connectionString) =>
        Assert.Null(new FleetTlsOptions().PostgresProblem(connectionString));

    [Theory]
    [InlineData("Host=db.internal;Database=fleet", "Prefer")]
    [InlineData("Host=10.0.0.5;Database=fleet;SSL Mode=Require", "Require")]
    [InlineData("Host=db.internal;Database=fleet;SSL Mode=VerifyCA", "VerifyCA")]
    [InlineData("Host=db.internal;Database=fleet;SSL Mode=Allow", "Allow")]
    [InlineData("Host=127.0.0.1,db.internal;Database=fleet;SSL Mode=Require", "Require")]
    public void ADatabaseConnection_ToAnotherHostThatDoesNotVerify_IsRefused_UnlessAllowed(string connectionString, string mode)
    {
        var problem = new FleetTlsOptions().PostgresProblem(connectionString);

        Assert.Contains($"SSL Mode={mode}, which does not verify", problem, StringComparison.Ordinal);
        Assert.Contains("Tls:PostgresAllowUnverified", problem, StringComparison.Ordinal);
        Assert.Null(new FleetTlsOptions { PostgresAllowUnverified = true }.PostgresProblem(connectionString));
    }

    [Fact]
    public void FleetClientOptions_RefuseAnUnverifiedRemoteDatabase_NamingTheSetting()
    {
        var options = new FleetClientOptions { PostgresConnectionString = "Host=db.internal;Database=fleet;SSL Mode=Require", RabbitMqUri = "amqp://u:p@mq/fleet" };

        var ex = Assert.Throws<ValidationException>(() => Validator.ValidateObject(options, new ValidationContext(options), validateAllProperties: true));

        Assert.Contains("SSL Mode=Require", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AMissingCaFile_AnEmptyOne_OrACaFileWithTheOptOut_FailValidationAtStart_NamingTheSetting()
    {
        var empty = Path.Combine(_dir.FullName, "empty.pem");
        File.WriteAllText(empty, "not a certificate");
        var good = WritePem("ca.pem", CreateCa("CN=Unit CA"));

        Assert.Contains("Tls:RabbitMqCaFile", TlsValidationError(new() { ["Tls:RabbitMqCaFile"] = Path.Combine(_dir.FullName, "missing.pem") }), StringComparison.Ordinal);
        Assert.Contains("holds no PEM certificate", TlsValidationError(new() { ["Tls:RabbitMqCaFile"] = empty }), StringComparison.Ordinal);
        Assert.Contains("contradict", TlsValidationError(new() { ["Tls:RabbitMqCaFile"] = good, ["Tls:RabbitMqAllowUntrusted"] = "true" }), StringComparison.Ordinal);
        Assert.Null(TlsValidationError(new() { ["Tls:RabbitMqCaFile"] = good }));
    }

    [Fact]
    public void TheBrokerAddress_CarriesTheTlsSettings_IntoEveryConnection()
    {
        var strict = Configuration(new() { ["ConnectionStrings:rabbitmq"] = "amqps://u:p@mq.internal/fleet" }).GetRabbitMqAddress();
        var optOut = Configuration(new() { ["ConnectionStrings:rabbitmq"] = "amqps://u:p@mq.internal/fleet", ["Tls:RabbitMqAllowUntrusted"] = "true" }).GetRabbitMqAddress();

        Assert.Same(ServerCertificateValidator.SystemTrust, strict.Certificates);
        Assert.True(optOut.Certificates.AcceptsAny);
        var ssl = strict.CreateConnectionFactory("test").Ssl;
        Assert.Equal((true, "mq.internal", SslPolicyErrors.None), (ssl.Enabled, ssl.ServerName, ssl.AcceptablePolicyErrors));
        Assert.NotNull(ssl.CertificateValidationCallback);
    }

    [Fact]
    public void ACertificateOfTheConfiguredCa_ForThisHost_Passes()
    {
        using var ca = CreateCa("CN=Unit CA");
        using var leaf = CreateLeaf(ca, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        var validator = new ServerCertificateValidator(WritePem("ca.pem", ca), "Tls:RabbitMqCaFile");

        Assert.Null(validator.Problem(leaf, null, SslPolicyErrors.None));
    }

    [Fact]
    public void ACertificateOfAnotherCa_IsNotTrusted()
    {
        using var ca = CreateCa("CN=Unit CA");
        using var other = CreateCa("CN=Other CA");
        using var leaf = CreateLeaf(ca, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        var validator = new ServerCertificateValidator(WritePem("other.pem", other), "Tls:RabbitMqCaFile (other.pem)");

        var problem = validator.Problem(leaf, null, SslPolicyErrors.None);

        Assert.Contains("is not trusted: its chain does not end in Tls:RabbitMqCaFile (other.pem)", problem, StringComparison.Ordinal);
        Assert.Throws<ServerCertificateException>(() => validator.For("RabbitMQ at mq:5671")(this, leaf, null, SslPolicyErrors.None));
    }

    [Fact]
    public void AnExpiredCertificate_SaysItIsExpired()
    {
        using var ca = CreateCa("CN=Unit CA");
        using var leaf = CreateLeaf(ca, DateTimeOffset.UtcNow.AddDays(-3), DateTimeOffset.UtcNow.AddDays(-1));
        var validator = new ServerCertificateValidator(WritePem("ca.pem", ca), "Tls:RabbitMqCaFile");

        Assert.Contains("is expired or not yet valid", validator.Problem(leaf, null, SslPolicyErrors.None), StringComparison.Ordinal);
    }

    [Fact]
    public void ANameMismatch_NamesWhatTheCertificateIsFor_AndOnlyTheOptOutAcceptsIt()
    {
        using var ca = CreateCa("CN=Unit CA");
        using var leaf = CreateLeaf(ca, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        var validator = new ServerCertificateValidator(WritePem("ca.pem", ca), "Tls:RabbitMqCaFile");

        Assert.Contains("does not name this host (it names 127.0.0.1)", validator.Problem(leaf, null, SslPolicyErrors.RemoteCertificateNameMismatch), StringComparison.Ordinal);
        Assert.True(ServerCertificateValidator.AcceptAny.For("RabbitMQ at mq:5671")(this, leaf, null, SslPolicyErrors.RemoteCertificateNameMismatch | SslPolicyErrors.RemoteCertificateChainErrors));
    }

    private static string? TlsValidationError(Dictionary<string, string?> settings)
    {
        settings["ConnectionStrings:fleetdb"] = "Host=127.0.0.1;Database=fleet";
        settings["ConnectionStrings:rabbitmq"] = "amqp://u:p@127.0.0.1/fleet";
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(settings);
        builder.AddFleetWorker();
        using var host = builder.Build();
        return Record.Exception(() => host.Services.GetRequiredService<IOptions<FleetTlsOptions>>().Value)?.Message;
    }

    private static IConfiguration Configuration(Dictionary<string, string?> settings) =>
        new ConfigurationBuilder().AddInMemoryCollection(settings).Build();

    private string WritePem(string name, X509Certificate2 certificate)
    {
        var path = Path.Combine(_dir.FullName, name);
        File.WriteAllText(path, certificate.ExportCertificatePem());
        return path;
    }

    private static X509Certificate2 CreateCa(string subject)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-5), DateTimeOffset.UtcNow.AddDays(5));
    }

    private static X509Certificate2 CreateLeaf(X509Certificate2 ca, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=unit-server", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        return request.Create(ca, notBefore, notAfter, RandomNumberGenerator.GetBytes(8));
    }
}
