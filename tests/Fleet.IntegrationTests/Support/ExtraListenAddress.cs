using System.Net;

namespace Fleet.IntegrationTests.Support;

/// <summary>
/// A second address the private servers listen on besides 127.0.0.1, and the subnet whose clients they accept
/// there: the bridge of the multi-host test bed, where the simulated servers (network namespaces) reach them.
/// </summary>
internal sealed record ExtraListenAddress(IPAddress Address, IPNetwork Clients);
