using Fleet.Cli;

namespace Fleet.UnitTests;

/// <summary><c>fleet workers</c>' lines: every value under its heading, the process lane's columns included.</summary>
public sealed class WorkersCommandTests
{
    private static readonly WorkersCommand.WorkerRow WithProcessLane = new(
        "vm:15317:4647a6", "vm", 15317, "fleet-cpu,fleet-io", 2, 256, "running", 1.4,
        1200, 3, 1, ProcessSlots: 4, ProcessBusy: 1, ProcessChildrenStarted: 12, ProcessKills: 2, ProcessDeaths: 1);

    [Fact]
    public void AWorkerWithAProcessLane_ShowsBusyOverSlots_AndItsChildrenStartedKilledAndDied()
    {
        var columns = Columns(WorkersCommand.Line(WithProcessLane, staleSeconds: 20));

        Assert.Equal("1/4", columns["PROC"]);
        Assert.Equal("12", columns["STARTS"]);
        Assert.Equal("2", columns["KILLS"]);
        Assert.Equal("1", columns["DEATHS"]);
        Assert.Equal("2", columns["CPU"]);
        Assert.Equal("256", columns["IO"]);
        Assert.Equal("running", columns["STATE"]);
        Assert.Equal("1s", columns["SEEN"]);
        Assert.Equal("1200", columns["OK"]);
    }

    [Fact]
    public void AWorkerWithoutAProcessLane_ShowsDashes_NotZerosThatWouldReadAsALaneThatNeverFailed()
    {
        var row = WithProcessLane with { ProcessSlots = 0, ProcessBusy = 0, ProcessChildrenStarted = 0, ProcessKills = 0, ProcessDeaths = 0 };

        var columns = Columns(WorkersCommand.Line(row, staleSeconds: 20));

        Assert.Equal(["-", "-", "-", "-"], new[] { columns["PROC"], columns["STARTS"], columns["KILLS"], columns["DEATHS"] });
        Assert.Equal("2", columns["CPU"]);
    }

    [Fact]
    public void AWorkerUnseenForLongerThanTheStaleTime_IsStale_UnlessItStopped()
    {
        Assert.Equal("stale", Columns(WorkersCommand.Line(WithProcessLane with { SeenSecondsAgo = 21 }, staleSeconds: 20))["STATE"]);
        Assert.Equal("stopped", Columns(WorkersCommand.Line(WithProcessLane with { SeenSecondsAgo = 900, State = "stopped" }, staleSeconds: 20))["STATE"]);
    }

    [Fact]
    public void EveryValue_EndsUnderItsHeading_OrStartsThere()
    {
        // Right-aligned columns end where their heading ends, left-aligned ones start where it starts: a value that
        // overflows its width shifts every column after it.
        var line = WorkersCommand.Line(WithProcessLane, staleSeconds: 20);
        var header = WorkersCommand.Header;
        Assert.Equal(header.Length, line.Length);
        foreach (var (name, start, end) in Headings(header))
        {
            var value = Columns(line)[name];
            var leftAligned = name is "ID" or "HOST" or "QUEUES" or "STATE";
            Assert.True(
                leftAligned ? line[start..].StartsWith(value, StringComparison.Ordinal) : line[..end].EndsWith(value, StringComparison.Ordinal),
                $"{name}: '{value}' is not under its heading\n{header}\n{line}");
        }
    }

    /// <summary>Each heading with the values split at the same positions (no value holds a space).</summary>
    private static Dictionary<string, string> Columns(string line)
    {
        var names = Headings(WorkersCommand.Header).Select(h => h.Name).ToList();
        var values = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(names.Count, values.Length);
        return names.Zip(values).ToDictionary(p => p.First, p => p.Second, StringComparer.Ordinal);
    }

    private static IEnumerable<(string Name, int Start, int End)> Headings(string header)
    {
        var i = 0;
        while (i < header.Length)
        {
            if (header[i] == ' ')
            {
                i++;
                continue;
            }

            var start = i;
            while (i < header.Length && header[i] != ' ')
            {
                i++;
            }

            yield return (header[start..i], start, i);
        }
    }
}
