using System.ComponentModel.DataAnnotations;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Fleet.Api;
using Fleet.Api.Monitoring;
using Fleet.Client;
using Fleet.Client.Tls;
using Fleet.Messaging;
using MassTransit;
using Microsoft.Extensions.Configuration;

namespace Fleet.UnitTests;

/// <summary>Several broker nodes in one address: parsing, refusals, the order each process tries them in, TLS per node.</summary>
public sealed class BrokerAddressTests : IDisposable
{
    private const string Cluster = "amqp://fleet:p%40ss@mq-0:5672,mq-1:5673,mq-2/fleet?heartbeat=4";

    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fleet-broker-unit-");

    public void Dispose() => _dir.Delete(recursive: true);

    [Fact]
    public void SeveralNodes_AreReadInOrder_WithOneUserVhostAndQuery_AndTheFirstIsHostAndPort()
    {
        var address = RabbitMqAddress.Parse(Cluster);

        Assert.Equal([new RabbitMqNode("mq-0", 5672), new RabbitMqNode("mq-1", 5673), new RabbitMqNode("mq-2", 5672)], address.Nodes);
        Assert.Equal(("mq-0", 5672, "fleet", "fleet", "p@ss", false, TimeSpan.FromSeconds(4)),
            (address.Host, address.Port, address.VirtualHost, address.UserName, address.Password, address.UseTls, address.Heartbeat));
    }

    [Fact]
    public void OneNode_IsStillOneNode_AndTlsDefaultsEveryPortTo5671()
    {
        var one = RabbitMqAddress.Parse("amqp://u:p@broker:1234/prod");
        var tls = RabbitMqAddress.Parse("amqps://u:p@mq-0,mq-1:6000/%2F");

        Assert.Equal([new RabbitMqNode("broker", 1234)], one.Nodes);
        Assert.Equal([new RabbitMqNode("mq-0", 5671), new RabbitMqNode("mq-1", 6000)], tls.Nodes);
        Assert.Equal("/", tls.VirtualHost);
    }

    [Fact]
    public void IPv6Nodes_AreWrittenInBrackets_AndKeptWithout()
    {
        var address = RabbitMqAddress.Parse("amqp://u:p@[::1]:5673,[fd00::2],10.0.0.3:5674/fleet");

        Assert.Equal([new RabbitMqNode("::1", 5673), new RabbitMqNode("fd00::2", 5672), new RabbitMqNode("10.0.0.3", 5674)], address.Nodes);
        Assert.Equal("[::1]:5673", address.Nodes[0].ToString());
    }

    [Theory]
    [InlineData("amqp://u:p@mq-0,,mq-2/fleet", "empty host")]
    [InlineData("amqp://u:p@mq-0,/fleet", "empty host")]
    [InlineData("amqp://u:p@/fleet", "empty host")]
    [InlineData("amqp://u:p@mq-0:5672,mq-0/fleet", "twice")]
    [InlineData("amqps://u:p@mq-0,mq-0:5671/fleet", "twice")]
    [InlineData("amqp://u:p@mq-0:0/fleet", "port of mq-0")]
    [InlineData("amqp://u:p@mq-0,mq-1:65536/fleet", "port of mq-1")]
    [InlineData("amqp://u:p@mq-0:x/fleet", "port of mq-0")]
    [InlineData("amqp://u:p@mq-0:/fleet", "port of mq-0")]
    [InlineData("amqp://u:p@::1/fleet", "brackets")]
    [InlineData("amqp://u:p@[::1/fleet", "[address]:port")]
    [InlineData("amqp://u:p@mq 0/fleet", "not a host name")]
    [InlineData("http://mq-0/fleet", "amqp://user:pass@host:5672/vhost")]
    public void ABadNodeList_IsRefused_NamingTheSettingAndWhatIsWrong(string uri, string expected)
    {
        var ex = Assert.Throws<FormatException>(() => RabbitMqAddress.Parse(uri, "ConnectionStrings:rabbitmq"));

        Assert.Contains("ConnectionStrings:rabbitmq", ex.Message, StringComparison.Ordinal);
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("u:p", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AParseErrorFromConfiguration_NamesTheConnectionStringAndItsEnvironmentVariable()
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["ConnectionStrings:rabbitmq"] = "amqp://u:p@mq-0,mq-0/fleet" })
            .Build();

        var ex = Assert.Throws<FormatException>(configuration.GetRabbitMqAddress);

        Assert.Contains("ConnectionStrings__rabbitmq", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ToStringAndServerDescription_NameEveryNode_AndNoPassword()
    {
        var address = RabbitMqAddress.Parse(Cluster);

        Assert.Equal("amqp://fleet:***@mq-0:5672,mq-1:5673,mq-2:5672/fleet", address.ToString());
        Assert.Equal("RabbitMQ at mq-0:5672, mq-1:5673, mq-2:5672", address.ServerDescription);
    }

    [Fact]
    public void TheNodeOrder_IsATurnOfTheWrittenList_TheSameForOneName_AndSpreadsManyProcesses()
    {
        var address = RabbitMqAddress.Parse(Cluster);
        var firsts = new Dictionary<RabbitMqNode, int>();
        for (var pid = 1000; pid < 1090; pid++)
        {
            var name = $"fleet-worker host-{pid % 7}:{pid}";
            var order = address.NodesInOrderFor(name);
            Assert.Equal(order, address.NodesInOrderFor(name));
            var start = address.Nodes.ToList().IndexOf(order[0]);
            Assert.Equal([.. address.Nodes.Skip(start), .. address.Nodes.Take(start)], order);
            firsts[order[0]] = firsts.GetValueOrDefault(order[0]) + 1;
        }

        // 90 names over three nodes: each node starts a fair share (an even spread is 30 each).
        Assert.Equal(3, firsts.Count);
        Assert.All(firsts.Values, count => Assert.InRange(count, 15, 45));
    }

    [Fact]
    public void EveryNode_GetsItsOwnEndpoint_WithItsOwnTlsServerName()
    {
        var address = RabbitMqAddress.Parse("amqps://u:p@mq-0,mq-1:6000,[::1]/fleet");

        var endpoints = address.CreateEndpoints();

        Assert.Equal([("mq-0", 5671, "mq-0"), ("mq-1", 6000, "mq-1"), ("::1", 5671, "::1")],
            endpoints.Select(e => (e.HostName, e.Port, e.Ssl.ServerName)));
        Assert.All(endpoints, e => Assert.True(e.Ssl.Enabled));
        Assert.All(endpoints, e => Assert.NotNull(e.Ssl.CertificateValidationCallback));
    }

    [Fact]
    public void ACertificateRefusedOnOneNode_NamesThatNode()
    {
        using var ca = CreateCa();
        using var leaf = CreateLeaf(ca, "mq-0");
        var address = RabbitMqAddress.Parse("amqps://u:p@mq-0,mq-1/fleet") with { Certificates = new ServerCertificateValidator(WritePem(ca), "the unit CA") };

        var endpoints = address.CreateEndpoints();

        Assert.True(endpoints[0].Ssl.CertificateValidationCallback!(this, leaf, null, SslPolicyErrors.None));
        var refused = Assert.Throws<ServerCertificateException>(() => endpoints[1].Ssl.CertificateValidationCallback!(this, leaf, null, SslPolicyErrors.RemoteCertificateNameMismatch));
        Assert.Contains("RabbitMQ at mq-1:5671", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FleetsOwnConnections_LeaveRecoveryToTheirCallers()
    {
        var factory = RabbitMqAddress.Parse(Cluster).CreateConnectionFactory("test");

        Assert.Equal((false, false), (factory.AutomaticRecoveryEnabled, factory.TopologyRecoveryEnabled));
    }

    [Fact]
    public void TheBusCheck_ForSeveralNodes_ChecksTheNameOfTheNodeDialled_NotTheOneServerNameSentToAll()
    {
        using var ca = CreateCa();
        using var leaf = CreateLeaf(ca, "mq-1");
        var certificates = new ServerCertificateValidator(WritePem(ca), "the unit CA");
        var dialled = new RabbitMqNode("mq-1", 5671);
        var check = RabbitMqBusConfiguratorExtensions.CheckedAgainstDialledNode(certificates, () => dialled);

        // The handshake sent mq-0 (the first node's name) and reports a mismatch; the certificate names mq-1, the node dialled.
        Assert.True(check(this, leaf, null, SslPolicyErrors.RemoteCertificateNameMismatch));

        // The same certificate from the node mq-2: refused, naming mq-2, even though the handshake's verdict was "no error".
        dialled = new RabbitMqNode("mq-2", 5671);
        var refused = Assert.Throws<ServerCertificateException>(() => check(this, leaf, null, SslPolicyErrors.None));
        Assert.Contains("RabbitMQ at mq-2:5671", refused.Message, StringComparison.Ordinal);
        Assert.Contains("does not name this host", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheBus_StartsAtTheFirstNodeOfItsOwnOrder()
    {
        var address = RabbitMqAddress.Parse(Cluster);
        var hosts = new HashSet<string>();
        foreach (var name in Enumerable.Range(1, 12).Select(pid => $"fleet-worker w:{pid}"))
        {
            var bus = Bus.Factory.CreateUsingRabbitMq(cfg => cfg.UseFleetHost(address, name));

            // MassTransit leaves the AMQP default port out of the bus address.
            var first = address.NodesInOrderFor(name)[0];
            Assert.Equal((first.Host, first.Port), (bus.Address.Host, bus.Address.IsDefaultPort || bus.Address.Port < 0 ? 5672 : bus.Address.Port));
            hosts.Add(bus.Address.Host);
        }

        Assert.True(hosts.Count > 1, "twelve processes' buses all started at one node");
    }

    [Fact]
    public void TheBus_RefusesAnIPv6NodeInACluster_WithTheFix()
    {
        var address = RabbitMqAddress.Parse("amqp://u:p@[::1]:5672,mq-1/fleet");

        var ex = Assert.ThrowsAny<Exception>(() => Bus.Factory.CreateUsingRabbitMq(cfg => cfg.UseFleetHost(address, "x")));

        var format = ExceptionChain.Find<FormatException>(ex);
        Assert.NotNull(format);
        Assert.Contains("DNS name", format.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheManagementUri_TakesOneUriPerNode_AndABadEntryIsNamedByPosition_WithoutItsText()
    {
        var good = new ApiOptions { ApiKeys = ["0123456789abcdef0123456789abcdef"], RabbitMqManagementUri = "http://u:p@mq-0:15672/, http://mq-1:15672" };
        var bad = new ApiOptions { ApiKeys = ["0123456789abcdef0123456789abcdef"], RabbitMqManagementUri = "http://mq-0:15672/,amqp://u:secret@mq-1" };

        Assert.Equal(["http://u:p@mq-0:15672/", "http://mq-1:15672"], RabbitMqManagementClient.SplitUris(good.RabbitMqManagementUri));
        Assert.Empty(Validate(good));
        var error = Assert.Single(Validate(bad));
        Assert.Contains("entry 2 of 2", error, StringComparison.Ordinal);
        Assert.DoesNotContain("secret", error, StringComparison.Ordinal);
    }

    private static List<string> Validate(ApiOptions options)
    {
        var results = new List<System.ComponentModel.DataAnnotations.ValidationResult>();
        Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);
        return [.. results.Select(r => r.ErrorMessage ?? "")];
    }

    private string WritePem(X509Certificate2 certificate)
    {
        var path = Path.Combine(_dir.FullName, $"{Guid.NewGuid():N}.pem");
        File.WriteAllText(path, certificate.ExportCertificatePem());
        return path;
    }

    private static X509Certificate2 CreateCa()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=Unit Cluster CA", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-5), DateTimeOffset.UtcNow.AddDays(5));
    }

    private static X509Certificate2 CreateLeaf(X509Certificate2 ca, string dnsName)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={dnsName}", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName(dnsName);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        return request.Create(ca, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1), RandomNumberGenerator.GetBytes(8));
    }
}
