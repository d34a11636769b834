using System.Globalization;
using System.Net;
using Fleet.IntegrationTests.Support;

namespace Fleet.IntegrationTests.MultiHost;

/// <summary>One simulated server: a network namespace with its own address, and the host-side end of its link.</summary>
public sealed record SimulatedHost(int Number, string Namespace, IPAddress Address, string Link)
{
    /// <summary>The <c>Worker:HostName</c> its workers report: <c>server-N</c>.</summary>
    public string Name => $"server-{Number}";
}

/// <summary>
/// The simulated servers of one test run, made and removed by <c>infra/local/netsim.sh</c> (the same script
/// <c>make fleet-sim</c> uses): network namespaces on a private bridge, owned by this test process. Their names
/// carry this process's pid, so a detached watcher removes them if the process dies without cleaning up, and the
/// next run sweeps whatever a dead run left. Needs root and iproute2: without them creation fails, loudly.
/// </summary>
internal sealed class SimulatedNetwork : IAsyncDisposable
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(60);

    private readonly string _script;
    private readonly FixtureLog _log;
    private int _disposed;

    private SimulatedNetwork(string script, FixtureLog log, IPAddress bridge, IPNetwork subnet, IReadOnlyList<SimulatedHost> hosts)
    {
        _script = script;
        _log = log;
        BridgeAddress = bridge;
        Subnet = subnet;
        Hosts = hosts;
    }

    /// <summary>This machine's address on the bridge: where PostgreSQL and RabbitMQ listen for the hosts.</summary>
    public IPAddress BridgeAddress { get; }

    public IPNetwork Subnet { get; }

    public IReadOnlyList<SimulatedHost> Hosts { get; }

    public static async Task<SimulatedNetwork> CreateAsync(int hosts, FixtureLog log)
    {
        var script = Repository.PathTo("infra", "local", "netsim.sh");
        if (!OperatingSystem.IsLinux() || !Environment.IsPrivilegedProcess || ProcessTools.FindOnPath("ip") is null)
        {
            throw new InvalidOperationException(
                "The multi-host tests need Linux network namespaces: run them as root with iproute2 installed " +
                $"(ip netns add, veth, bridge). Here: Linux={OperatingSystem.IsLinux()}, root={Environment.IsPrivilegedProcess}, " +
                $"ip on PATH={ProcessTools.FindOnPath("ip") is not null}. They fail instead of skipping, so that a machine without them is noticed.");
        }

        await RunAsync(script, ["sweep"], log).ConfigureAwait(false);
        var output = await RunAsync(script, ["up", hosts.ToString(CultureInfo.InvariantCulture)], log).ConfigureAwait(false);
        var settings = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(line => line.Split('=', 2))
            .Where(pair => pair.Length == 2 && pair[0].StartsWith("NETSIM_", StringComparison.Ordinal))
            .ToDictionary(pair => pair[0], pair => pair[1], StringComparer.Ordinal);
        var simulated = Enumerable.Range(1, hosts).Select(n =>
        {
            var fields = settings[$"NETSIM_HOST_{n}"].Split(' ');
            return new SimulatedHost(n, fields[0], IPAddress.Parse(fields[1]), fields[2]);
        }).ToList();
        var network = new SimulatedNetwork(
            script, log, IPAddress.Parse(settings["NETSIM_BRIDGE_ADDR"]), IPNetwork.Parse(settings["NETSIM_SUBNET"]), simulated);
        log.Info($"simulated network: bridge {network.BridgeAddress} ({network.Subnet}), hosts " +
                 string.Join(", ", simulated.Select(h => $"{h.Name} {h.Address} ({h.Namespace})")));
        return network;
    }

    /// <summary>
    /// Pulls <paramref name="host"/>'s cable: its link goes down, packets are dropped, no connection is reset. What
    /// <c>netsim.sh cut</c> does, but with one <c>ip</c> call and no shell in between, so that the cut lands close
    /// to the moment the caller records, even on a busy machine.
    /// </summary>
    public Task CutAsync(SimulatedHost host) => SetLinkAsync(host, "down");

    /// <summary>Plugs the cable back in (<c>netsim.sh heal</c>).</summary>
    public Task HealAsync(SimulatedHost host) => SetLinkAsync(host, "up");

    /// <summary>Ends every process left in the hosts, then removes the hosts, links and the bridge.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            await RunAsync(_script, ["down"], _log).ConfigureAwait(false);
        }
    }

    private async Task SetLinkAsync(SimulatedHost host, string state)
    {
        ArgumentNullException.ThrowIfNull(host);
        await ProcessTools.RunCheckedAsync("ip", ["link", "set", "dev", host.Link, state], CommandTimeout).ConfigureAwait(false);
        _log.Info($"{host.Name} ({host.Namespace}) link {state}");
    }

    private static async Task<string> RunAsync(string script, string[] arguments, FixtureLog log)
    {
        var environment = new Dictionary<string, string> { ["NETSIM_OWNER"] = Environment.ProcessId.ToString(CultureInfo.InvariantCulture) };
        var result = await ProcessTools.RunAsync(script, arguments, CommandTimeout, environment).ConfigureAwait(false);
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"infra/local/netsim.sh {string.Join(' ', arguments)} failed ({result.ExitCode}); the multi-host tests need root and " +
                $"Linux network namespaces (ip netns, veth, bridge):{Environment.NewLine}{result.Output}");
        }

        foreach (var line in result.Output.Split('\n').Where(line => line.StartsWith("netsim:", StringComparison.Ordinal)))
        {
            log.Info(line);
        }

        return result.Output;
    }
}
