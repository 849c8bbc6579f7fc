// Sarama (Debian's golang-github-shopify-sarama-dev, built offline in GOPATH mode by
// ci/compat/test_sarama.py) against a Spate broker:
//
//	sarama_client BOOTSTRAP TOPIC GROUP RECORDS
//
// creates TOPIC (3 partitions) with the cluster admin, produces RECORDS keyed records with an
// idempotent acks=all producer, and consumes them with two members of GROUP that split the
// partitions. Prints one JSON object for the test to check.
//
// Not checked: committed offsets. Sarama 1.22's offset manager commits with OffsetCommit v1,
// which Kafka 4 removed (KIP-896) and Spate does not serve either (it closes the connection,
// as for any version it does not serve); newer Sarama releases commit with v2+.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

type consumed struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

type member struct {
	mu         sync.Mutex
	records    []consumed
	partitions map[int32]bool
	total      *int64
	want       int64
	done       chan struct{}
	closeOnce  *sync.Once
	// Partitions of the member's current session.
	claimed int
}

// Whether every partition is claimed and each member holds some.
func assigned(members []*member) bool {
	total := 0
	for _, m := range members {
		m.mu.Lock()
		claimed := m.claimed
		m.mu.Unlock()
		if claimed == 0 {
			return false
		}
		total += claimed
	}
	return total == 3
}

func (m *member) Setup(session sarama.ConsumerGroupSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.claimed = 0
	for _, partitions := range session.Claims() {
		m.claimed += len(partitions)
	}
	return nil
}
func (m *member) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (m *member) ConsumeClaim(session sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for message := range claim.Messages() {
		m.mu.Lock()
		m.records = append(m.records, consumed{message.Partition, message.Offset})
		m.partitions[message.Partition] = true
		m.mu.Unlock()
		if add(m.total, 1) >= m.want {
			m.closeOnce.Do(func() { close(m.done) })
		}
	}
	return nil
}

var counter sync.Mutex

func add(total *int64, n int64) int64 {
	counter.Lock()
	defer counter.Unlock()
	*total += n
	return *total
}

func config(clientID string) *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V2_1_0_0
	c.ClientID = clientID
	c.Producer.Idempotent = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Retry.Max = 10
	c.Producer.Return.Successes = true
	c.Net.MaxOpenRequests = 1
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	return c
}

func fail(what string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
	os.Exit(1)
}

func main() {
	if os.Getenv("SARAMA_DEBUG") != "" {
		sarama.Logger = log.New(os.Stderr, "[sarama] ", log.LstdFlags)
	}
	bootstrap, topic, group := os.Args[1], os.Args[2], os.Args[3]
	count, _ := strconv.Atoi(os.Args[4])
	brokers := strings.Split(bootstrap, ",")

	admin, err := sarama.NewClusterAdmin(brokers, config("sarama-admin"))
	if err != nil {
		fail("admin", err)
	}
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false); err != nil {
		fail("create topic", err)
	}
	admin.Close()

	var total int64
	done := make(chan struct{})
	once := &sync.Once{}
	members := []*member{}
	var wait sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	for i := 0; i < 2; i++ {
		m := &member{partitions: map[int32]bool{}, total: &total, want: int64(count), done: done, closeOnce: once}
		members = append(members, m)
		consumer, err := sarama.NewConsumerGroup(brokers, group, config(fmt.Sprintf("member-%d", i)))
		if err != nil {
			fail("consumer group", err)
		}
		wait.Add(1)
		go func() {
			defer wait.Done()
			for ctx.Err() == nil {
				if err := consumer.Consume(ctx, []string{topic}, m); err != nil && ctx.Err() == nil {
					fmt.Fprintf(os.Stderr, "consume: %v\n", err)
					time.Sleep(200 * time.Millisecond)
				}
			}
			consumer.Close()
		}()
	}
	// Produce once both members hold partitions, so that no rebalance moves a partition
	// that was already read (nothing is committed: see the top).
	for !assigned(members) {
		if ctx.Err() != nil {
			fail("group", fmt.Errorf("the two members never split the topic"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	producer, err := sarama.NewSyncProducer(brokers, config("sarama-producer"))
	if err != nil {
		fail("producer", err)
	}
	var acked []consumed
	for i := 0; i < count; i++ {
		partition, offset, err := producer.SendMessage(&sarama.ProducerMessage{
			Topic: topic,
			Key:   sarama.StringEncoder(fmt.Sprintf("k%d", i%13)),
			Value: sarama.StringEncoder(fmt.Sprintf("v%d", i)),
		})
		if err != nil {
			fail("produce", err)
		}
		acked = append(acked, consumed{partition, offset})
	}
	producer.Close()

	select {
	case <-done:
	case <-ctx.Done():
	}
	cancel()
	wait.Wait()

	out := map[string]interface{}{"acked": acked}
	var described []map[string]interface{}
	for _, m := range members {
		partitions := []int32{}
		for p := range m.partitions {
			partitions = append(partitions, p)
		}
		described = append(described, map[string]interface{}{"records": m.records, "partitions": partitions})
	}
	out["members"] = described
	encoded, _ := json.Marshal(out)
	fmt.Println(string(encoded))
}
