namespace Fleet.IntegrationTests.Support;

/// <summary>
/// Base of tests that start worker processes of their own: after the reset the in-process worker is stopped, so
/// that only the test's workers consume, and a task type that misbehaves never runs inside the test host.
/// </summary>
public abstract class OwnWorkersTest(FleetFixture fleet) : FleetTest(fleet)
{
    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        await Fleet.StopWorkerAsync();
    }
}
