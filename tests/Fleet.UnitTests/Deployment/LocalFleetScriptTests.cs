using System.Diagnostics;

namespace Fleet.UnitTests.Deployment;

/// <summary>
/// <c>make down</c> (infra/local/fleet.sh) sends SIGKILL to a worker that has not stopped after its stop timeout;
/// that timeout must outlast the worker's own shutdown, or a draining worker is killed mid-drain. And
/// infra/local/services.sh, which the integration tests run too, checks its arguments before it touches a folder.
/// </summary>
public sealed class LocalFleetScriptTests
{
    [Theory]
    [InlineData(null)]
    [InlineData("100")]
    public void MakeDown_WaitsLongerThanTheWorkersOwnShutdown(string? drainSeconds)
    {
        var environment = new Dictionary<string, string> { ["ConnectionStrings__fleetdb"] = "Host=localhost", ["ConnectionStrings__rabbitmq"] = "amqp://localhost" };
        if (drainSeconds is not null)
        {
            environment["Worker__DrainSeconds"] = drainSeconds;
        }

        var (_, shutdown) = AppEnvironment.Worker(environment, "make down");

        var stopTimeout = StopTimeout(drainSeconds);

        Assert.True(stopTimeout > shutdown.TotalSeconds, $"fleet.sh's stop timeout {stopTimeout} s must exceed the worker's shutdown timeout {shutdown.TotalSeconds} s");
    }

    [Fact]
    public void Services_RefusesAnUnknownServer_BeforeTouchingAnything()
    {
        var home = Path.Combine(Path.GetTempPath(), "fleet-services-" + Guid.NewGuid().ToString("N"));
        var (exitCode, error) = RunServices(home, "kill", "mysql");

        Assert.NotEqual(0, exitCode);
        Assert.Contains("unknown server 'mysql'", error, StringComparison.Ordinal);
        Assert.False(Directory.Exists(home));
    }

    [Theory]
    [InlineData("kill")]
    [InlineData("stop")]
    public void Services_KillAndStop_OfAFleetThatNeverStarted_DoNothing(string command)
    {
        var home = Path.Combine(Path.GetTempPath(), "fleet-services-" + Guid.NewGuid().ToString("N"));
        var (exitCode, error) = RunServices(home, command, "rabbitmq");

        Assert.True(exitCode == 0, error);
        Assert.False(Directory.Exists(home));
    }

    /// <summary>
    /// The local fleet has a key per scope: services.sh generates a read key and an admin key beside the read-write
    /// key, writes all three to .fleet/env, and fleet.sh hands each to the API in its own list.
    /// </summary>
    [Fact]
    public void Services_GeneratesAKeyPerScope_AndFleetShGivesEachToTheApi()
    {
        var home = Path.Combine(Path.GetTempPath(), "fleet-services-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (exitCode, error) = RunServices(home, "env");
            Assert.True(exitCode == 0, error);
            var info = new ProcessStartInfo("bash", ["-c", ". \"$1\" && printf '%s\\n' \"$FLEET_API_READ_KEY\" \"$FLEET_API_KEY\" \"$FLEET_API_ADMIN_KEY\"", "bash", Path.Combine(home, "env")])
            {
                RedirectStandardOutput = true,
            };
            using var bash = Process.Start(info)!;
            var keys = bash.StandardOutput.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
            bash.WaitForExit();

            Assert.Equal(3, keys.Length);
            var options = new Fleet.Api.ApiOptions { ReadKeys = [keys[0]], ApiKeys = [keys[1]], AdminKeys = [keys[2]] };
            var results = new List<System.ComponentModel.DataAnnotations.ValidationResult>();
            Assert.True(
                System.ComponentModel.DataAnnotations.Validator.TryValidateObject(options, new(options), results, validateAllProperties: true),
                string.Join("; ", results.Select(r => r.ErrorMessage)));
        }
        finally
        {
            if (Directory.Exists(home))
            {
                Directory.Delete(home, recursive: true);
            }
        }

        var fleetSh = File.ReadAllText(DeploymentFiles.PathOf("infra/local/fleet.sh"));
        Assert.Contains("\"Api__ApiKeys__0=$key\"", fleetSh, StringComparison.Ordinal);
        Assert.Contains("\"Api__ReadKeys__0=$(env_get FLEET_API_READ_KEY)\"", fleetSh, StringComparison.Ordinal);
        Assert.Contains("\"Api__AdminKeys__0=$(env_get FLEET_API_ADMIN_KEY)\"", fleetSh, StringComparison.Ordinal);
    }

    private static (int ExitCode, string Error) RunServices(string home, params string[] arguments)
    {
        var info = new ProcessStartInfo("bash", [DeploymentFiles.PathOf("infra/local/services.sh"), .. arguments]) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var key in Environment.GetEnvironmentVariables().Keys.OfType<string>().Where(k => k.StartsWith("FLEET_", StringComparison.Ordinal)))
        {
            info.Environment.Remove(key);
        }

        info.Environment["FLEET_HOME"] = home;
        using var bash = Process.Start(info)!;
        var error = bash.StandardError.ReadToEnd();
        bash.StandardOutput.ReadToEnd();
        bash.WaitForExit();
        return (bash.ExitCode, error);
    }

    /// <summary>The stop timeout as fleet.sh computes it: its own two assignment lines, run by bash.</summary>
    private static int StopTimeout(string? drainSeconds)
    {
        var lines = File.ReadAllLines(DeploymentFiles.PathOf("infra/local/fleet.sh"))
            .Where(l => l.StartsWith("DRAIN_SECONDS=", StringComparison.Ordinal) || l.StartsWith("STOP_TIMEOUT=", StringComparison.Ordinal))
            .ToList();
        Assert.Equal(2, lines.Count);
        var info = new ProcessStartInfo("bash", ["-c", string.Join('\n', lines) + "\necho \"$STOP_TIMEOUT\""]) { RedirectStandardOutput = true };
        info.Environment.Remove("FLEET_STOP_TIMEOUT");
        info.Environment.Remove("Worker__DrainSeconds");
        if (drainSeconds is not null)
        {
            info.Environment["Worker__DrainSeconds"] = drainSeconds;
        }

        using var bash = Process.Start(info)!;
        var output = bash.StandardOutput.ReadToEnd();
        bash.WaitForExit();
        return int.Parse(output.Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }
}
