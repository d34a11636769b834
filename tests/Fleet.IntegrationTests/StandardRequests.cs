using Fleet.Client;
using Fleet.Tasks.BuiltIn;

namespace Fleet.IntegrationTests;

/// <summary>Client requests of a standard workload (<see cref="StandardWorkloads"/>): task <c>i</c> gets payload <c>i</c>.</summary>
internal static class StandardRequests
{
    public static IEnumerable<TaskRequest> Of(string workload, int count, Guid? batchId = null) =>
        Enumerable.Range(0, count).Select(i => new TaskRequest(workload, StandardWorkloads.Payload(workload, i)) { BatchId = batchId });
}
