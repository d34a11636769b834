using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Fleet.Client;

/// <summary>Registration of the <see cref="BatchCallbackWatcher"/> for a host (the API, a worker).</summary>
public static class WorkflowServiceCollectionExtensions
{
    /// <summary>
    /// Binds and validates (at start) the <c>Workflows</c> section and registers the <see cref="BatchCallbackWatcher"/>, which
    /// reads <paramref name="dataSource"/>'s database and publishes callback tasks through <paramref name="publisher"/>.
    /// The host adds the hosted service that runs it.
    /// </summary>
    public static IServiceCollection AddFleetBatchWatcher(
        this IServiceCollection services, Func<IServiceProvider, NpgsqlDataSource> dataSource, Func<IServiceProvider, ITaskPublisher> publisher)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentNullException.ThrowIfNull(publisher);
        services.AddOptions<WorkflowOptions>().BindConfiguration(WorkflowOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton(sp => new BatchCallbackWatcher(dataSource(sp), publisher(sp), sp.GetService<ILogger<BatchCallbackWatcher>>()));
        return services;
    }
}
