using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json;
using System.Threading.Tasks;
using PeerLink.LabTests.NatLab;
using Xunit;

namespace PeerLink.LabTests.MdnsLab;

/// <summary>
/// mDNS on real sockets inside network namespaces (eng/mdnslab.sh): PeerLink with PeerLink, and PeerLink with Avahi in
/// both directions. Host i is 10.77.0.i. Nothing leaves the lab.
/// </summary>
public sealed class MdnsLabTests
{
    [MdnsLabFact]
    public async Task Two_nodes_in_two_namespaces_discover_each_other_and_open_a_session()
    {
        await using MdnsLabFixture lab = await MdnsLabFixture.UpAsync(2);
        (var kitchen, string ready) = await lab.StartHelperAsync(1, "peer-node", "Kitchen");
        JsonElement node = Json(ready["ready ".Length..]);

        (int exit, string output, string error) = await lab.RunHelperAsync(2, "peer-connect", "Hallway");

        Assert.True(exit == 0, error);
        JsonElement result = Json(output);
        Assert.Equal(node.GetProperty("peer").GetString(), result.GetProperty("peer").GetString());
        Assert.Equal("Kitchen", result.GetProperty("name").GetString());
        Assert.Equal($"10.77.0.1:{node.GetProperty("port").GetInt32()}", result.GetProperty("endPoint").GetString());
        Assert.Equal("hello from Hallway", result.GetProperty("echoed").GetString());
    }

    [MdnsLabFact]
    public async Task A_name_conflict_between_two_nodes_is_resolved_by_renaming()
    {
        await using MdnsLabFixture lab = await MdnsLabFixture.UpAsync(3);
        Task<(System.Diagnostics.Process, string)> first = lab.StartHelperAsync(1, "peer-node", "Sensor");
        Task<(System.Diagnostics.Process, string)> second = lab.StartHelperAsync(2, "peer-node", "Sensor");
        string[] names = [.. (await Task.WhenAll(first, second)).Select(r => Json(r.Item2["ready ".Length..]).GetProperty("name").GetString()!).Order()];

        Assert.Equal(["Sensor", "Sensor (2)"], names);

        // A third host sees both, under their final names.
        (int exit, string output, string error) = await lab.RunHelperAsync(3, "mdns-browse", "_peerlink._tcp", "10000", "2");
        Assert.True(exit == 0, error);
        Assert.Equal(["Sensor", "Sensor (2)"], Events(output).Where(e => e.GetProperty("kind").GetString() == "Found").Select(e => e.GetProperty("name").GetString()).Order());
    }

    [MdnsLabFact]
    public async Task A_stopped_node_disappears_from_a_browser_through_its_goodbye()
    {
        await using MdnsLabFixture lab = await MdnsLabFixture.UpAsync(2);
        (var node, _) = await lab.StartHelperAsync(1, "peer-node", "Leaving");
        (var browser, _) = await lab.StartHelperAsync(2, "mdns-browse", "_peerlink._tcp", "20000", "99");

        JsonElement found = Json((await browser.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(10)))!);
        Assert.Equal("Found", found.GetProperty("kind").GetString());
        await MdnsLabFixture.StopAsync(node);
        var stopped = DateTime.UtcNow;

        JsonElement lost = Json((await browser.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(10)))!);
        Assert.Equal("Lost", lost.GetProperty("kind").GetString());
        Assert.Equal("Leaving", lost.GetProperty("name").GetString());
        Assert.True(DateTime.UtcNow - stopped < TimeSpan.FromSeconds(5), "the goodbye, not the TTL, removed it");
    }

    [MdnsLabFact]
    public async Task An_interface_that_comes_up_later_is_used_and_the_service_announced_on_it()
    {
        await using MdnsLabFixture lab = await MdnsLabFixture.UpAsync(2);
        (int down, _, string error) = await LabProcess.RunAsync("bash", [System.IO.Path.Combine(AppContext.BaseDirectory, "mdnslab.sh"), "link", "1", "down"], new() { ["MDNSLAB_PREFIX"] = lab.Prefix });
        Assert.True(down == 0, error);
        await lab.StartHelperAsync(1, "mdns-advertise", "Late Lamp", "_peerlink._tcp", "4242");   // no interface yet
        (var browser, _) = await lab.StartHelperAsync(2, "mdns-browse", "_peerlink._tcp", "20000", "1");

        (int up, _, error) = await LabProcess.RunAsync("bash", [System.IO.Path.Combine(AppContext.BaseDirectory, "mdnslab.sh"), "link", "1", "up"], new() { ["MDNSLAB_PREFIX"] = lab.Prefix });
        Assert.True(up == 0, error);

        string? line = await browser.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(15));
        JsonElement found = Json(line!);
        Assert.Equal("Found", found.GetProperty("kind").GetString());
        Assert.Equal("Late Lamp", found.GetProperty("name").GetString());
        Assert.Contains("10.77.0.1", found.GetProperty("addresses").EnumerateArray().Select(a => a.GetString()));
    }

    [MdnsLabFact(avahi: true)]
    public async Task Avahi_browses_and_resolves_a_PeerLink_service_with_its_txt()
    {
        await using MdnsLabFixture lab = await MdnsLabFixture.UpAsync(2);
        await lab.StartAvahiAsync(2);
        await lab.StartHelperAsync(1, "mdns-advertise", "PeerLink Lamp", "_peerlink._tcp", "4242", "v=1", "id=abc", "bare");

        (int exit, string output, string error) = await lab.RunAvahiToolAsync(2, "avahi-browse", "--resolve", "--parsable", "--terminate", "_peerlink._tcp");

        Assert.True(exit == 0, error);
        // "=;eth0;IPv4;PeerLink\032Lamp;_peerlink._tcp;local;HOST;ADDRESS;PORT;TXT" (avahi-browse escapes the space)
        string[] resolved = output.Split('\n').Where(l => l.StartsWith("=;eth0;IPv4;", StringComparison.Ordinal)).Select(l => l.Trim()).ToArray();
        string[] fields = Assert.Single(resolved).Split(';');
        Assert.Equal("PeerLink\\032Lamp", fields[3]);
        Assert.Equal("_peerlink._tcp", fields[4]);
        Assert.StartsWith("peerlink-", fields[6], StringComparison.Ordinal);
        Assert.Equal("10.77.0.1", fields[7]);
        Assert.Equal("4242", fields[8]);
        Assert.Equal(["\"bare\"", "\"id=abc\"", "\"v=1\""], fields[9].Split(' ').Order());
    }

    [MdnsLabFact(avahi: true)]
    public async Task PeerLink_browses_and_resolves_a_service_published_with_avahi_publish()
    {
        await using MdnsLabFixture lab = await MdnsLabFixture.UpAsync(2);
        await lab.StartAvahiAsync(2);
        await lab.StartAvahiToolAsync(2, "Established", "avahi-publish", "--service", "Avahi Printer", "_ipp._tcp", "631", "rp=printers/lab", "color=T", "duplex");

        (var browser, _) = await lab.StartHelperAsync(1, "mdns-browse", "_ipp._tcp", "20000", "99");

        // Avahi answers over IPv4 and IPv6 in separate packets: the instance is Found with the first address and
        // Updated when the other arrives. Follow it until the IPv4 address is there.
        JsonElement first = Json((await browser.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(10)))!);
        Assert.Equal("Found", first.GetProperty("kind").GetString());
        JsonElement found = first;
        while (!found.GetProperty("addresses").EnumerateArray().Any(a => a.GetString() == "10.77.0.2"))
        {
            found = Json((await browser.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(10)))!);
            Assert.Equal("Updated", found.GetProperty("kind").GetString());
        }

        Assert.Equal("Avahi Printer", found.GetProperty("name").GetString());
        Assert.Equal("avahi-2.local", found.GetProperty("host").GetString());
        Assert.Equal(631, found.GetProperty("port").GetInt32());
        JsonElement properties = found.GetProperty("properties");
        Assert.Equal("printers/lab", properties.GetProperty("rp").GetString());
        Assert.Equal("T", properties.GetProperty("color").GetString());
        Assert.Equal(JsonValueKind.Null, properties.GetProperty("duplex").ValueKind);
    }

    [MdnsLabFact(avahi: true)]
    public async Task PeerLink_and_avahi_share_port_5353_on_one_host()
    {
        await using MdnsLabFixture lab = await MdnsLabFixture.UpAsync(1);
        await lab.StartAvahiAsync(1);
        await lab.StartAvahiToolAsync(1, "Established", "avahi-publish", "--service", "Same Host Avahi", "_http._tcp", "8080");
        await lab.StartHelperAsync(1, "mdns-advertise", "Same Host PeerLink", "_http._tcp", "9090");

        // PeerLink, bound to 5353 beside avahi-daemon, sees avahi's service; avahi sees PeerLink's (multicast loopback).
        (int exit, string output, string error) = await lab.RunHelperAsync(1, "mdns-browse", "_http._tcp", "10000", "2");
        Assert.True(exit == 0, error);
        Assert.Equal(["Same Host Avahi", "Same Host PeerLink"], Events(output).Where(e => e.GetProperty("kind").GetString() == "Found").Select(e => e.GetProperty("name").GetString()).Order());

        (exit, output, error) = await lab.RunAvahiToolAsync(1, "avahi-browse", "--resolve", "--parsable", "--terminate", "_http._tcp");
        Assert.True(exit == 0, error);
        Assert.Contains(output.Split('\n'), l => l.StartsWith("=;eth0;IPv4;Same\\032Host\\032PeerLink;", StringComparison.Ordinal) && l.Contains(";10.77.0.1;9090;", StringComparison.Ordinal));
    }

    private static JsonElement Json(string line) => JsonDocument.Parse(line).RootElement.Clone();

    private static List<JsonElement> Events(string output) =>
        output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith('{')).Select(Json).ToList();
}
