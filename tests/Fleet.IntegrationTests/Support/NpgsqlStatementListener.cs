using System.Diagnostics;

namespace Fleet.IntegrationTests.Support;

/// <summary>
/// Records the SQL text of every command Npgsql runs in this process, from Npgsql's own tracing (ActivitySource
/// "Npgsql"): a way to count statements without a proxy or server-side logging.
/// </summary>
public static class NpgsqlStatementListener
{
    public static IDisposable Start(List<string> statements)
    {
        ArgumentNullException.ThrowIfNull(statements);
        var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Npgsql",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllData,
            ActivityStopped = activity =>
            {
                // The tag's name depends on the OpenTelemetry conventions version Npgsql follows.
                var text = activity.GetTagItem("db.query.text") as string ?? activity.GetTagItem("db.statement") as string;
                if (text is not null)
                {
                    lock (statements)
                    {
                        statements.Add(text);
                    }
                }
            },
        };
        ActivitySource.AddActivityListener(listener);
        return listener;
    }
}
