using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Fleet.Client;

/// <summary>Registration of the <see cref="Dispatcher"/> for a host (the API, a worker).</summary>
public static class DispatcherServiceCollectionExtensions
{
    /// <summary>
    /// Binds and validates (at start) the <c>Dispatch</c> section and registers the <see cref="Dispatcher"/>, which
    /// reads <paramref name="dataSource"/>'s database and publishes through <paramref name="publisher"/>. The host adds
    /// the hosted service that runs it.
    /// </summary>
    public static IServiceCollection AddFleetDispatcher(
        this IServiceCollection services, Func<IServiceProvider, NpgsqlDataSource> dataSource, Func<IServiceProvider, ITaskPublisher> publisher)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentNullException.ThrowIfNull(publisher);
        services.AddOptions<DispatchOptions>().BindConfiguration(DispatchOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton(sp => new Dispatcher(
            dataSource(sp), publisher(sp), sp.GetRequiredService<IOptions<DispatchOptions>>().Value,
            new TaskSubmitterOptions(), sp.GetService<ILogger<Dispatcher>>()));
        return services;
    }
}
