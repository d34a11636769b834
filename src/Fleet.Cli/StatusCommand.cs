using System.CommandLine;
using System.Globalization;
using Fleet.Client;

namespace Fleet.Cli;

/// <summary><c>fleet status ID</c>: one task's state as <c>key: value</c> lines; exit 1 when it does not exist.</summary>
internal static class StatusCommand
{
    public static Command Create()
    {
        var id = new Argument<Guid>("id") { Description = "The task id." };
        var command = new Command("status", "Show one task: status, result or error, attempts, timings, worker.") { id };
        command.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(async ct =>
        {
            await using var client = CliSettings.CreateClient();
            var info = await client.GetAsync(parse.GetValue(id), ct).ConfigureAwait(false);
            if (info is null)
            {
                await Console.Error.WriteLineAsync($"fleet: no task {parse.GetValue(id)}").ConfigureAwait(false);
                return 1;
            }

            Print(info);
            return 0;
        }, cancellationToken));
        return command;
    }

    public static void Print(TaskInfo info)
    {
        ArgumentNullException.ThrowIfNull(info);
        static string Time(DateTimeOffset? t) => t?.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture) ?? "-";
        Console.WriteLine($"id:            {info.Id}");
        Console.WriteLine($"type:          {info.Type}");
        Console.WriteLine($"queue:         {info.Queue}");
        Console.WriteLine($"status:        {info.Status}");
        Console.WriteLine($"attempts:      {info.Attempts}");
        Console.WriteLine($"submitted_at:  {Time(info.SubmittedAt)}");
        Console.WriteLine($"started_at:    {Time(info.StartedAt)}");
        Console.WriteLine($"finished_at:   {Time(info.FinishedAt)}");
        Console.WriteLine($"worker:        {info.WorkerId ?? "-"}");
        Console.WriteLine($"payload:       {info.Payload}");
        Console.WriteLine($"result:        {info.Result ?? "-"}");
        if (info.ErrorType is not null)
        {
            Console.WriteLine($"error_type:    {info.ErrorType}");
            Console.WriteLine($"error_message: {info.ErrorMessage}");
        }
    }
}
