using System.ComponentModel.DataAnnotations;
using System.Text.Json;
using Fleet.Api;
using Fleet.Client;
using Fleet.Worker;
using Npgsql;

namespace Fleet.UnitTests;

/// <summary>Worker groups: which queue names and lanes may be declared, and what a catalog answers about them.</summary>
public sealed class QueueCatalogTests
{
    [Fact]
    public void ACatalog_KnowsTheBuiltInLanes_AndTheDeclaredQueuesWithTheirLanes_ByNameOrDispatchQueue()
    {
        var catalog = QueueCatalog.Of(new Dictionary<string, string> { ["reports"] = "cpu", ["emails"] = "io" });

        Assert.Equal(["fleet-cpu", "fleet-io", "emails", "reports"], catalog.Names);
        Assert.Equal(["emails", "reports"], catalog.Declared.Keys.Order(StringComparer.Ordinal));
        Assert.True(catalog.IsCpu("reports"));
        Assert.True(catalog.IsCpu("reports.dispatch"));
        Assert.True(catalog.IsCpu("fleet-cpu.dispatch"));
        Assert.False(catalog.IsCpu("emails"));
        Assert.Equal("io", catalog.LaneOf("emails.dispatch"));
        Assert.Null(catalog.LaneOf("elsewhere"));
        Assert.False(catalog.Contains("reports.dispatch"));
        Assert.Equal(["fleet-cpu", "reports"], catalog.CpuQueues);
        Assert.Equal("fleet-cpu, fleet-io", QueueCatalog.BuiltIn.ToString());
    }

    [Theory]
    [InlineData("Reports", "cpu", "lowercase letters")]
    [InlineData("re.ports", "cpu", "no '.' or '_'")]
    [InlineData("re_ports", "cpu", "no '.' or '_'")]
    [InlineData("7reports", "cpu", "starting with a letter")]
    [InlineData("fleet-cpu", "cpu", "built-in queue")]
    [InlineData("fleet-control", "io", "built-in queue")]
    [InlineData("reports", "gpu", "must be cpu or io, not 'gpu'")]
    [InlineData("reports", "CPU", "must be cpu or io, not 'CPU'")]
    public void ADeclaration_IsRefused_WithTheReason(string name, string lane, string reason)
    {
        Assert.Contains(reason, QueueCatalog.Problem(name, lane), StringComparison.Ordinal);
        var ex = Assert.Throws<ArgumentException>(() => QueueCatalog.Of(new Dictionary<string, string> { [name] = lane }));
        Assert.Contains(reason, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheLongestName_Is63Characters_AsTheTableHoldsIt()
    {
        Assert.Null(QueueCatalog.Problem("r" + new string('-', 62), "io"));
        Assert.NotNull(QueueCatalog.Problem("r" + new string('-', 63), "io"));
    }

    [Fact]
    public void TheOptions_RefuseABadDeclaration_AtStart()
    {
        var api = new ApiOptions { ApiKeys = ["unit-test-key-0123456789"], Queues = { ["reports"] = "cpu", ["Bad"] = "io", ["x"] = "gpu" } };
        var apiErrors = Errors(api);
        Assert.Equal(2, apiErrors.Count);
        Assert.All(apiErrors, e => Assert.StartsWith("Api:Queues: ", e, StringComparison.Ordinal));

        Assert.Empty(Errors(new WorkerOptions { Queues = ["fleet-cpu", "reports"] }));
        var workerErrors = Errors(new WorkerOptions { Queues = ["fleet-io", "re.ports"] });
        Assert.Contains(workerErrors, e => e.StartsWith("Worker:Queues: The queue name 're.ports'", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("fleet-cpu.dispatch")]
    [InlineData("reports_error")]
    [InlineData("fleet-control")]
    [InlineData("Reports")]
    public async Task TheSubmitter_RefusesAQueueNameNoQueueCanHave_BeforeItTouchesTheDatabase(string queue)
    {
        await using var nowhere = NpgsqlDataSource.Create("Host=127.0.0.1;Port=1;Database=unused");
        var submitter = new TaskSubmitter(nowhere, new DelayedTaskInputTests.NoPublisher(), new TaskSubmitterOptions());
        var request = new TaskRequest("noop", JsonSerializer.SerializeToElement(new { })) { Queue = queue };

        var error = await Assert.ThrowsAsync<ArgumentException>(() => submitter.SubmitAsync([request]));

        Assert.Contains($"The queue of a task of type 'noop': ", error.Message, StringComparison.Ordinal);
    }

    private static List<string> Errors(object options)
    {
        var results = new List<ValidationResult>();
        Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);
        return [.. results.Select(r => r.ErrorMessage!)];
    }
}
