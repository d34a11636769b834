namespace Fleet.IntegrationTests.Support;

/// <summary>A server the test run started and therefore may stop, kill and start again (same port, same data).</summary>
internal interface IOwnedServer : IAsyncDisposable
{
    string Name { get; }

    /// <summary>First start at fixture initialisation.</summary>
    Task StartAsync(CancellationToken cancellationToken);

    /// <summary>Graceful stop; data stays.</summary>
    Task StopAsync(CancellationToken cancellationToken);

    /// <summary>Hard crash (SIGKILL where possible); data stays.</summary>
    Task KillAsync(CancellationToken cancellationToken);

    /// <summary>Start again after <see cref="StopAsync"/> or <see cref="KillAsync"/>, on the same port with the same data; returns when it serves.</summary>
    Task RestartStoppedAsync(CancellationToken cancellationToken);

    /// <summary>Synchronous last-resort stop for AppDomain.ProcessExit: fast, best effort, never throws.</summary>
    void EmergencyStop();
}
