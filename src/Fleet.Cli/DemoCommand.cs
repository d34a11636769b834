using System.CommandLine;
using System.Globalization;
using Fleet.Client;
using Fleet.Tasks.BuiltIn;

namespace Fleet.Cli;

/// <summary>
/// <c>fleet demo</c>: the project's main job, 1,000 "weather models" (the <c>heat</c> workload, 256x256 grid,
/// 1,000 steps each), spread over the running workers; shows progress, then the throughput and a SQL summary.
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var count = new Option<int>("--count", "-n") { Description = "How many heat tasks.", DefaultValueFactory = _ => 1000 };
        var command = new Command("demo", "Run the 1,000-task heat job end to end and print its summary.") { count };
        command.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            var n = parse.GetValue(count);
            var batchId = Guid.CreateVersion7();
            await using var client = CliSettings.CreateClient();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Submitting {n} heat tasks (n=256, steps=1000) as batch {batchId}"));
            var requests = Enumerable.Range(0, n).Select(i => new TaskRequest(HeatHandler.TypeName, StandardWorkloads.Payload(HeatHandler.TypeName, i)) { BatchId = batchId });
            await client.SubmitManyAsync(requests, ct).ConfigureAwait(false);
            var progress = await BatchWatcher.WaitAsync(client, batchId, n, TimeSpan.FromMinutes(30), ct).ConfigureAwait(false);
            await BatchSummary.PrintAsync(batchId, ct).ConfigureAwait(false);
            return progress.Final == progress.Succeeded ? 0 : 1;
        }, cancellationToken));
        return command;
    }
}
