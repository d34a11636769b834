using System.Net;
using Fleet.Tasks;
using Fleet.Tasks.BuiltIn;

namespace Fleet.UnitTests;

/// <summary>The networks http-get may connect to: entries, groups, mapped addresses, and deny over allow.</summary>
public sealed class HttpGetTargetGuardTests
{
    private static HttpGetTargetGuard Guard(string? allowed = null, string? denied = null) => HttpGetTargetGuard.Create(new HttpGetOptions
    {
        AllowedNetworks = allowed is null ? null : [allowed],
        DeniedNetworks = denied is null ? null : [denied],
    });

    [Theory]
    [InlineData("169.254.169.254")]
    [InlineData("169.254.1.1")]
    [InlineData("fe80::1")]
    [InlineData("fd00:ec2::254")]
    [InlineData("100.100.100.200")]
    [InlineData("0.0.0.0")]
    [InlineData("::")]
    [InlineData("::ffff:169.254.169.254")]
    public void ByDefault_LinkLocalMetadataAndUnspecifiedAddresses_AreRefused(string address)
    {
        var refusal = Guard().Refusal(IPAddress.Parse(address));

        Assert.NotNull(refusal);
        Assert.Contains(HttpGetOptions.DeniedNetworksKey, refusal, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("::1")]
    [InlineData("10.1.2.3")]
    [InlineData("192.168.0.10")]
    [InlineData("93.184.215.14")]
    [InlineData("2606:2800:21f:cb07:6820:80da:af6b:8b2c")]
    public void ByDefault_LoopbackPrivateAndPublicAddresses_ArePermitted(string address)
    {
        Assert.Null(Guard().Refusal(IPAddress.Parse(address)));
    }

    [Theory]
    [InlineData("loopback", "127.0.0.1", true)]
    [InlineData("loopback", "127.255.0.9", true)]
    [InlineData("loopback", "::1", true)]
    [InlineData("loopback", "::ffff:127.0.0.1", true)]
    [InlineData("loopback", "128.0.0.1", false)]
    [InlineData("private", "10.200.0.1", true)]
    [InlineData("private", "172.16.0.1", true)]
    [InlineData("private", "172.31.255.255", true)]
    [InlineData("private", "172.32.0.1", false)]
    [InlineData("private", "192.168.1.1", true)]
    [InlineData("private", "fd12:3456::1", true)]
    [InlineData("private", "::ffff:10.0.0.1", true)]
    [InlineData("private", "11.0.0.1", false)]
    [InlineData("link-local", "169.254.169.254", true)]
    [InlineData("link-local", "fe80::abcd", true)]
    [InlineData("unspecified", "0.0.0.0", true)]
    [InlineData("multicast", "239.1.2.3", true)]
    [InlineData("shared", "100.64.0.1", true)]
    [InlineData("any", "8.8.8.8", true)]
    [InlineData("any", "2001:db8::1", true)]
    [InlineData("LOOPBACK", "127.0.0.1", true)]
    [InlineData("10.0.0.0/8", "10.9.9.9", true)]
    [InlineData("10.0.0.0/8", "::ffff:10.9.9.9", true)]
    [InlineData("::ffff:10.0.0.0/104", "10.9.9.9", true)]
    [InlineData("2001:db8::/32", "2001:db8:1::5", true)]
    [InlineData("2001:db8::/32", "2001:db9::5", false)]
    [InlineData("203.0.113.7", "203.0.113.7", true)]
    [InlineData("203.0.113.7", "203.0.113.8", false)]
    [InlineData("none", "127.0.0.1", false)]
    public void ADeniedEntry_RefusesExactlyItsAddresses(string entry, string address, bool refused)
    {
        var refusal = Guard(denied: entry).Refusal(IPAddress.Parse(address));

        Assert.Equal(refused, refusal is not null);
    }

    [Fact]
    public void ARefusal_NamesTheAddressTheEntryAndTheSetting()
    {
        var refusal = Guard(denied: "loopback, 10.0.0.0/8").Refusal(IPAddress.Parse("::ffff:10.1.1.1"));

        Assert.Equal("10.1.1.1 (in '10.0.0.0/8', listed in Worker:HttpGet:DeniedNetworks)", refusal);
    }

    [Fact]
    public void WithAllowedNetworks_OnlyThoseArePermitted_AndDenyWins()
    {
        var guard = Guard(allowed: "private,127.0.0.1", denied: "10.0.0.0/16");

        Assert.Null(guard.Refusal(IPAddress.Parse("127.0.0.1")));
        Assert.Null(guard.Refusal(IPAddress.Parse("10.1.0.1")));
        Assert.Contains(HttpGetOptions.AllowedNetworksKey, guard.Refusal(IPAddress.Parse("127.0.0.2")), StringComparison.Ordinal);
        Assert.Contains(HttpGetOptions.AllowedNetworksKey, guard.Refusal(IPAddress.Parse("8.8.8.8")), StringComparison.Ordinal);
        Assert.Contains(HttpGetOptions.DeniedNetworksKey, guard.Refusal(IPAddress.Parse("10.0.5.5")), StringComparison.Ordinal);
    }

    [Fact]
    public void SettingDeniedNetworks_ReplacesTheDefault()
    {
        Assert.Null(Guard(denied: "none").Refusal(IPAddress.Parse("169.254.169.254")));
        Assert.Null(Guard(denied: "loopback").Refusal(IPAddress.Parse("169.254.169.254")));
    }

    [Theory]
    [InlineData("10.0.0.0/33")]
    [InlineData("10.0.0.1/8")]
    [InlineData("300.0.0.0/8")]
    [InlineData("intranet")]
    [InlineData("fe80::/129")]
    public void AnEntryThatIsNoNetworkNorGroup_IsRejectedByName(string entry)
    {
        var ex = Assert.Throws<ArgumentException>(() => Guard(denied: entry));

        Assert.Contains($"Worker:HttpGet:DeniedNetworks: '{entry}'", ex.Message, StringComparison.Ordinal);
    }
}
