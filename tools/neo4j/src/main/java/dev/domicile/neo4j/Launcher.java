package dev.domicile.neo4j;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.BoltConnectorInternalSettings;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.connectors.HttpsConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;

/**
 * A local Neo4j Community DBMS for development and tests: the embedded DBMS with only the Bolt
 * connector, listening on 127.0.0.1.
 *
 * <pre>
 * java [JVM flags, see README.md] -cp 'target/launcher.jar:target/lib/*' dev.domicile.neo4j.Launcher \
 *      --port 7687 --data DIR [--host 127.0.0.1] [--page-cache 64m]
 * </pre>
 *
 * Authentication is disabled unless the environment variable DOMICILE_NEO4J_PASSWORD is set
 * (at least 8 characters); then it is enabled and user "neo4j" gets that password. The password
 * is read from the environment, not the command line, so it never shows in `ps`.
 *
 * Prints exactly one line "NEO4J READY bolt://HOST:PORT" on stdout once Bolt accepts
 * connections and the default database is available; scripts wait for it. SIGTERM (or any
 * normal JVM exit) shuts the DBMS down cleanly through a shutdown hook, so every committed
 * transaction is on disk and the next start needs no recovery.
 */
public final class Launcher {

    private static final String PASSWORD_ENV = "DOMICILE_NEO4J_PASSWORD";
    private static final Duration READY_TIMEOUT = Duration.ofSeconds(120);

    private Launcher() {}

    public static void main(String[] args) throws Exception {
        Map<String, String> options = parseOptions(args);
        String host = options.getOrDefault("host", "127.0.0.1");
        int port = Integer.parseInt(required(options, "port"));
        Path home = Path.of(required(options, "data")).toAbsolutePath();
        long pageCache = parseBytes(options.getOrDefault("page-cache", "64m"));
        String password = System.getenv(PASSWORD_ENV);
        boolean authEnabled = password != null && !password.isEmpty();
        if (authEnabled && password.length() < 8) {
            // Neo4j's own minimum; failing here names the variable instead of a Cypher error.
            fail(PASSWORD_ENV + " must have at least 8 characters");
        }

        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(home)
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress(host, port))
                .setConfig(HttpConnector.enabled, false)
                .setConfig(HttpsConnector.enabled, false)
                .setConfig(GraphDatabaseSettings.auth_enabled, authEnabled)
                // Sized for a small shared machine: the catalog of a dev/test run is tiny.
                .setConfig(GraphDatabaseSettings.pagecache_memory, pageCache)
                .setConfig(GraphDatabaseSettings.memory_transaction_global_max_size, 256L * 1024 * 1024)
                .setConfig(BoltConnector.thread_pool_max_size, 64)
                // Neo4j pre-allocates 256 MiB transaction log files by default; tests create
                // many short-lived data directories, so keep logs small and not pre-allocated.
                .setConfig(GraphDatabaseSettings.preallocate_logical_logs, false)
                .setConfig(GraphDatabaseSettings.logical_log_rotation_threshold, 16L * 1024 * 1024)
                .setConfig(GraphDatabaseSettings.keep_logical_logs, "2 files")
                .setConfig(GraphDatabaseSettings.udc_enabled, false)
                // Internal settings: by default Bolt waits 5 s for idle connections and again
                // for its thread pool on shutdown; a local server has nothing to drain, and
                // tests stop and restart it, so a quick stop matters more.
                .setConfig(BoltConnectorInternalSettings.connection_shutdown_wait_time, Duration.ofSeconds(1))
                .setConfig(BoltConnectorInternalSettings.thread_pool_shutdown_wait_time, Duration.ofSeconds(1))
                .build();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            dbms.shutdown();
            System.out.println("NEO4J STOPPED");
            System.out.flush();
        }, "neo4j-shutdown"));

        GraphDatabaseService db = dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME);
        if (!db.isAvailable(READY_TIMEOUT.toMillis())) {
            fail("default database did not become available within " + READY_TIMEOUT);
        }
        if (authEnabled) {
            // Community has one user store in the system database; setting the password on
            // every start makes the environment variable the single source of truth.
            dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME).executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED", Map.of("password", password));
        }
        waitForBolt(host, port);
        System.out.println("NEO4J READY bolt://" + host + ":" + port);
        System.out.flush();
        // The DBMS runs on its own threads; this thread only keeps the JVM alive until a
        // signal triggers the shutdown hook.
        Thread.currentThread().join();
    }

    /** Blocks until a TCP connection to the Bolt port succeeds (the connector binds asynchronously). */
    private static void waitForBolt(String host, int port) throws InterruptedException {
        long deadline = System.nanoTime() + READY_TIMEOUT.toNanos();
        while (true) {
            try (Socket socket = new Socket()) {
                socket.connect(new InetSocketAddress(host, port), 1000);
                return;
            } catch (IOException notYet) {
                if (System.nanoTime() > deadline) {
                    fail("Bolt did not accept connections on " + host + ":" + port + " within " + READY_TIMEOUT);
                }
                TimeUnit.MILLISECONDS.sleep(100);
            }
        }
    }

    private static Map<String, String> parseOptions(String[] args) {
        Map<String, String> options = new HashMap<>();
        for (int i = 0; i < args.length; i += 2) {
            if (!args[i].startsWith("--") || i + 1 >= args.length) {
                fail("usage: Launcher --port PORT --data DIR [--host HOST] [--page-cache SIZE]");
            }
            options.put(args[i].substring(2), args[i + 1]);
        }
        return options;
    }

    private static String required(Map<String, String> options, String name) {
        String value = options.get(name);
        if (value == null) {
            fail("missing --" + name);
        }
        return value;
    }

    /** "64m" / "1g" / "65536" to bytes. */
    private static long parseBytes(String size) {
        String s = size.trim().toLowerCase();
        long unit = switch (s.charAt(s.length() - 1)) {
            case 'k' -> 1024L;
            case 'm' -> 1024L * 1024;
            case 'g' -> 1024L * 1024 * 1024;
            default -> 1L;
        };
        String digits = unit == 1L ? s : s.substring(0, s.length() - 1);
        return Long.parseLong(digits) * unit;
    }

    private static void fail(String message) {
        System.err.println("NEO4J FAILED " + message);
        System.exit(2);
    }
}
