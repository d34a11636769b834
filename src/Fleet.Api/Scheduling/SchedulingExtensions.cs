using Fleet.Persistence.Scheduling;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Fleet.Api.Scheduling;

public static class SchedulingExtensions
{
    /// <summary>
    /// Recurring schedules: the <c>Schedules</c> options (validated at start), the store behind <c>/schedules</c>, and
    /// the firing loop. Needs the database and the submission pipeline of <c>AddFleetApi</c>.
    /// </summary>
    public static IServiceCollection AddFleetSchedules(this IServiceCollection services)
    {
        services.AddOptions<ScheduleOptions>()
            .BindConfiguration(ScheduleOptions.SectionName)
            .ValidateDataAnnotations()
            .ValidateOnStart();

        // Keyed, so that a test's fake clock moves the schedules and stops no other timer of the host.
        services.TryAddKeyedSingleton(ScheduleFirer.ClockKey, TimeProvider.System);
        services.AddSingleton<ScheduleStore>();
        services.AddSingleton<ScheduleFirer>();
        services.AddHostedService<ScheduleFiringService>();
        return services;
    }
}
